#!/usr/bin/env python3
# steered.py DIR[,DIR...] [TOP]: per path, the busy CPU per connection of
# the benchmark's own processes (load generator "bench", backends "tcp-echo",
# softirq threads, interrupts on idle CPUs) in the windows bin/bench -marks
# wrote, by category and by symbol, minus direct's. Other processes on the
# machine are counted apart (they compete for the CPUs but are not in the
# figures). See steered.sh.
# per-path and per-rep busy CPU of the benchmark's own processes (bench = load generator,
# tcp-echo = backends, ksoftirqd, swapper non-idle), and symbol diffs summed over several profiles
import sys, subprocess, collections, bisect, statistics, os, pickle
freq = 2000.0
OURS = ('bench', 'tcp-echo', 'swapper', 'ksoftirqd')
IDLE = {'pv_native_safe_halt', 'default_idle', 'default_idle_call', 'cpuidle_enter_state', 'haltpoll_idle', 'acpi_safe_halt', 'do_idle', 'cpu_idle_poll'}
def load(d):
    cache = d + '/samples.pkl'
    if os.path.exists(cache):
        return pickle.load(open(cache, 'rb'))
    marks = []
    for line in open(d + '/marks'):
        p, s, e, n = line.split()
        marks.append((p, float(s), float(e), int(n)))
    marks.sort(key=lambda m: m[1])
    starts = [m[1] for m in marks]
    out = subprocess.run(['perf', 'script', '-i', d + '/perf.data', '-F', 'comm,time,ip,sym,dso', '--ns'], capture_output=True, text=True).stdout
    per = [collections.Counter() for _ in marks]   # symbol counts per mark window (ours, busy)
    other = [collections.Counter() for _ in marks] # other comms
    for line in out.splitlines():
        parts = line.split()
        ti = None
        for i, x in enumerate(parts):
            if x.endswith(':') and x[:-1].replace('.', '').isdigit():
                ti = i; break
        if ti is None: continue
        t = float(parts[ti][:-1])
        i = bisect.bisect_right(starts, t) - 1
        if i < 0 or t > marks[i][2]: continue
        c = ' '.join(parts[:ti])
        rest = parts[ti+2:]
        s = rest[0] if rest else '?'
        dso = rest[-1] if len(rest) > 1 else ''
        if s in IDLE: continue
        if not c.startswith(OURS):
            other[i][c] += 1; continue
        if dso.startswith('([kernel') or s.startswith('bpf_prog'):
            key = s
        else:
            key = s + ' [' + dso.strip('()').split('/')[-1] + ']'
        per[i][key] += 1
    r = (marks, per, other)
    pickle.dump(r, open(cache, 'wb'))
    return r
dirs = sys.argv[1].split(',')
top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
tot = collections.defaultdict(collections.Counter); conns = collections.Counter()
reps = collections.defaultdict(list); oth = collections.defaultdict(collections.Counter)
for d in dirs:
    marks, per, other = load(d)
    for (p, s, e, n), cnt, o in zip(marks, per, other):
        tot[p].update(cnt); conns[p] += n; oth[p].update(o)
        reps[p].append((n / (e - s), sum(cnt.values()) / freq * 1e6 / n))
paths = [x for x in ['direct', 'tcpshift-lookup', 'tcpshift-connect', 'tcpshift-lookup-noacct', 'tcpshift-connect-noacct'] if x in conns]
us = lambda p, n: n / freq * 1e6 / conns[p]
for p in paths:
    r = [x[0] for x in reps[p]]; c = [x[1] for x in reps[p]]
    print(f'{p:24s} conns {conns[p]:7d} rate median {statistics.median(r):6.0f}/s  busy CPU of bench+tcp-echo+softirq: median {statistics.median(c):6.1f} us/conn (min {min(c):.1f} max {max(c):.1f}); whole window {us(p, sum(tot[p].values())):.1f}; other processes {us(p, sum(oth[p].values())):.1f} us/conn')
# Paired: each repetition runs direct and then each path, so a path's run is
# compared with direct's run of the same repetition.
for p in paths[1:]:
    pr = [b[1] / a[1] for a, b in zip(reps['direct'], reps[p])]
    rr = [b[0] / a[0] for a, b in zip(reps['direct'], reps[p])]
    dd = [b[1] - a[1] for a, b in zip(reps['direct'], reps[p])]
    print(f'{p:24s} paired with direct over {len(pr)} repetitions: CPU per connection median {statistics.median(pr):.3f}x ({statistics.median(dd):+.1f} us), rate median {statistics.median(rr):.3f}x')
def cat(k):
    if k.startswith('bpf_prog'): return 'BPF programs (JIT)'
    if '[' in k: return 'user space'
    if any(x in k for x in ('bpf_sk_storage', 'bpf_local_storage', 'bpf_selem', 'bpf_map_kzalloc', 'bpf_map_kmalloc', '__cgroup_bpf', 'bpf_sk_assign', 'sock_map', 'htab', 'bpf_sock_ops', 'bpf_get_', 'bpf_skc', 'array_map', 'bpf_sk_lookup', 'bpf_prog_run', 'bpf_sk_release', '__bpf_')): return 'BPF helpers and hooks'
    if any(x in k for x in ('memcg', 'slab', 'kmalloc', 'kfree', 'kmem_cache', 'obj_cgroup', 'rcu', 'mod_objcg')): return 'allocation, free, RCU, memcg'
    if any(x in k for x in ('sched', 'switch', 'spin_unlock', 'wake', 'enqueue', 'dequeue', 'pick_', 'update_curr', 'ttwu', 'select_task', 'pvclock', 'clock', 'ktime')): return 'scheduler, wakeups, clocks'
    return 'other kernel (TCP/IP, syscalls, epoll, ...)'
for p in paths[1:]:
    print(f'\n{p} minus direct, us per connection, by category:')
    cc = collections.Counter(); cd = collections.Counter()
    for k, v in tot[p].items(): cc[cat(k)] += us(p, v)
    for k, v in tot['direct'].items(): cd[cat(k)] += us('direct', v)
    for k in sorted(set(cc) | set(cd), key=lambda k: -(cc[k] - cd[k])):
        print(f'  {cc[k]-cd[k]:+7.2f}  ({cd[k]:7.2f} -> {cc[k]:7.2f})  {k}')
    print(f'  top {top} symbols by difference:')
    keys = set(tot[p]) | set(tot['direct'])
    for k in sorted(keys, key=lambda k: -abs(us(p, tot[p][k]) - us('direct', tot['direct'][k])))[:top]:
        if abs(us(p, tot[p][k]) - us('direct', tot['direct'][k])) < 0.005: break
        a, b = us('direct', tot['direct'][k]), us(p, tot[p][k])
        print(f'    {b-a:+6.2f}  {a:6.2f} -> {b:6.2f}  {k}')
