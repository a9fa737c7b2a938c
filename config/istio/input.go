package istio

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tcpshift/tcpshift/config"
)

// Input is what `apply -f` and `run -f` were given: at most one tcpshift
// route config (whole-file semantics: the services: documents of one file)
// and at most MaxObjects objects.
type Input struct {
	Native  *config.Config // nil: no services: document
	Objects []*Object      // in the order given
	Files   []string       // every file read, in order
}

// Load reads files, directories (their *.yaml, *.yml and *.json files, not
// recursing, as kubectl -f) and "-" (stdin), each with any number of
// documents.
func Load(paths []string, stdin io.Reader) (*Input, error) {
	in := &Input{}
	seen := map[Key]string{}
	for _, p := range paths {
		files, err := expand(p)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			data, err := readFile(f, stdin)
			if err != nil {
				return nil, err
			}
			name := f
			if f == "-" {
				name = "stdin"
			}
			docs, err := Decode(name, data)
			if err != nil {
				return nil, err
			}
			if len(docs) == 0 {
				// Empty or only comments: refused as a route config is.
				_, err := config.Parse(name, data)
				return nil, err
			}
			in.Files = append(in.Files, name)
			// The services: documents of one file are one route config.
			var natives *config.Documents
			for _, d := range docs {
				if d.Native != nil {
					if in.Native != nil {
						return nil, &config.Error{Path: name, Line: d.Native.Line, Field: "services", Msg: fmt.Sprintf("a second tcpshift route config (the first is %s): give the services in one file", in.Native.Path)}
					}
					if natives == nil {
						natives = config.NewDocuments(name)
					}
					if err := natives.Add(d.Native); err != nil {
						return nil, err
					}
					continue
				}
				o := d.Object
				if where, dup := seen[o.Key]; dup {
					return nil, &config.Error{Path: name, Line: o.Line, Field: o.Key.String(), Msg: "given twice (first at " + where + ")"}
				}
				seen[o.Key] = fmt.Sprintf("%s:%d", name, o.Line)
				if len(in.Objects) == MaxObjects {
					return nil, tooManyObjects(o, false)
				}
				in.Objects = append(in.Objects, o)
			}
			if natives != nil {
				cfg, err := natives.Config()
				if err != nil {
					return nil, err
				}
				in.Native = cfg
			}
		}
	}
	if in.Native == nil && len(in.Objects) == 0 {
		return nil, &config.Error{Path: strings.Join(in.Files, ", "), Msg: "no services and no objects: nothing to apply (tcpshift down removes everything)"}
	}
	return in, nil
}

// expand turns a directory into its YAML and JSON files, sorted.
func expand(p string) ([]string, error) {
	if p == "-" {
		return []string{p}, nil
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return []string{p}, nil
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if !e.IsDir() && slices.Contains([]string{".yaml", ".yml", ".json"}, ext) {
			files = append(files, filepath.Join(p, e.Name()))
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no .yaml, .yml or .json files in the directory", p)
	}
	return files, nil
}

func readFile(f string, stdin io.Reader) ([]byte, error) {
	var r io.Reader = stdin
	if f != "-" {
		file, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		defer file.Close()
		r = file
	}
	data, err := io.ReadAll(io.LimitReader(r, config.MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f, err)
	}
	if len(data) > config.MaxFileSize {
		return nil, &config.Error{Path: f, Msg: fmt.Sprintf("larger than the %d MiB limit for a route config", config.MaxFileSize>>20)}
	}
	return data, nil
}
