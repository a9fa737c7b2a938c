package config

import "gopkg.in/yaml.v3"

// Documents parses a route config given as several YAML documents of one
// file (separated by ---), one document at a time, as a reader of a file
// that mixes them with Istio's objects meets them. The services of all
// documents are merged in file order, as if one services: list held them:
// a name or listen address two documents use is refused at the second,
// naming the line of the first, and the limits count every document's
// services and endpoints.
type Documents struct {
	p     *parser
	cfg   *Config
	added int        // documents with content
	null  *yaml.Node // the first null document, refused if no other comes
}

// NewDocuments starts the route config of the file at path (used in errors
// and Config.Path).
func NewDocuments(path string) *Documents {
	return &Documents{p: &parser{path: path}, cfg: &Config{Path: path}}
}

// Add parses one more document: a yaml.DocumentNode as yaml.v3 decodes it,
// or its root. A null document (an empty one between two ---) is skipped.
// The error is an *Error, the first problem of the document in file order.
func (d *Documents) Add(doc *yaml.Node) error {
	root := doc
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil // only comments
		}
		root = doc.Content[0]
	}
	root = resolve(root)
	if isNull(root) {
		if d.null == nil {
			d.null = root
		}
		return nil
	}
	d.added++
	d.p.root(root, d.cfg)
	if dup := FirstDuplicate(root); dup != nil {
		// After the parser's own checks, whose words win at one place
		// (a subset given twice is a duplicate subset).
		d.p.failAt(dup.Line, dup.Col, dup.Field, "%s", dup.Msg())
	}
	if d.p.err != nil {
		return d.p.err
	}
	return nil
}

// Config returns the services of every document added, or the error that a
// file with none gets.
func (d *Documents) Config() (*Config, error) {
	if d.p.err != nil {
		return nil, d.p.err
	}
	if d.added == 0 {
		if d.null != nil {
			d.p.fail(d.null, "services", noServicesMsg)
		} else {
			d.p.err = &Error{Path: d.p.path, Field: "services", Msg: noServicesMsg}
		}
		return nil, d.p.err
	}
	return d.cfg, nil
}
