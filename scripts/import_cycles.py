#!/usr/bin/env python3
"""Import cycles between the crate's modules.

Reads every `use crate::...` / `use super::...` line (and inline `crate::a::b` paths) in src/,
maps each to the longest module path that exists as a file, builds the module graph
(one node per source file) and prints its strongly connected components with more than one
member. Usage: python3 scripts/import_cycles.py [src-dir] [--prefix tui]
"""
import os, re, sys

def modules(src):
    mods = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith('.rs') or f == 'main.rs':
                continue
            rel = os.path.relpath(os.path.join(root, f), src)[:-3].split(os.sep)
            if rel[-1] in ('mod', 'lib'):
                rel = rel[:-1]
            mods[tuple(rel)] = os.path.join(root, f)
    return mods

def strip_tests(text):
    # drop `#[cfg(test)] mod tests { ... }` blocks: test code does not make a library cycle
    m = re.search(r'#\[cfg\(test\)\]\s*mod tests', text)
    return text[:m.start()] if m else text

def expand(tree):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']"""
    tree = tree.strip()
    i = tree.find('{')
    if i < 0:
        return [tree.split(' as ')[0].strip()]
    head, body = tree[:i], tree[i + 1:tree.rfind('}')]
    parts, depth, cur = [], 0, ''
    for ch in body:
        if ch == ',' and depth == 0:
            parts.append(cur); cur = ''
            continue
        depth += ch == '{'
        depth -= ch == '}'
        cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        if p.strip():
            for e in expand(p):
                out.append(head + e)
    return out

def resolve(path, mods):
    parts = tuple(x for x in path.split('::') if x and x != 'self')
    for n in range(len(parts), -1, -1):
        if parts[:n] in mods:
            return parts[:n]
    return None

def edges(mods):
    g = {m: set() for m in mods}
    for m, f in mods.items():
        text = strip_tests(open(f).read())
        text = re.sub(r'//[^\n]*', '', text)
        here = m if f.endswith(('mod.rs', 'lib.rs')) else m  # super:: of a file module is its parent
        parent = m[:-1]
        paths = []
        for u in re.finditer(r'\buse\s+((?:crate|super)::[^;]+);', text, re.S):
            paths += expand(re.sub(r'\s+', ' ', u.group(1)))
        paths += re.findall(r'(?<![:\w])((?:crate|super)::(?:\w+::)*\w+)', text)
        # `use crate::a::{self}` / `use crate::a::b;` makes `b::...` a path into that module
        aliases = {}
        for p in list(paths):
            q = p[:-len('::self')] if p.endswith('::self') else p
            last = q.split('::')[-1]
            if last not in ('crate', 'super', 'self'):
                aliases[last] = q
        for a, q in aliases.items():
            for rest in re.findall(r'(?<![:\w])' + re.escape(a) + r'((?:::\w+)+)', text):
                paths.append(q + rest)
        for p in paths:
            if p.startswith('crate::'):
                full = p[len('crate::'):]
            else:
                base = list(parent if not f.endswith('mod.rs') else m[:-1])
                rest = p
                while rest.startswith('super::'):
                    rest = rest[len('super::'):]
                full = '::'.join(base + [rest])
                # nested super::super
                n = p.count('super::')
                base = list(m[:len(m) - n]) if not f.endswith('mod.rs') else list(m[:len(m) - n])
                full = '::'.join(base + [rest])
            t = resolve(full, mods)
            if t is not None and t != m and t != ():
                g[m].add(t)
    return g

def sccs(g):
    index, low, on, stack, out, i = {}, {}, set(), [], [], [0]
    sys.setrecursionlimit(10000)
    def visit(v):
        index[v] = low[v] = i[0]; i[0] += 1
        stack.append(v); on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            out.append(comp)
    for v in sorted(g):
        if v not in index:
            visit(v)
    return out

def name(m):
    return '::'.join(m) or 'lib'

if __name__ == '__main__':
    args = [a for a in sys.argv[1:] if not a.startswith('--')]
    src = args[0] if args else 'src'
    mods = modules(src)
    g = edges(mods)
    cycles = sorted((sorted(c) for c in sccs(g) if len(c) > 1), key=len, reverse=True)
    print(f'{len(mods)} modules, {sum(len(v) for v in g.values())} import edges, '
          f'{len(cycles)} import cycles (strongly connected components of more than one module)')
    for c in cycles:
        print(f'  {len(c)} modules: ' + ', '.join(name(m) for m in c))
    lib = [c for c in cycles if not any(m and m[0] in ('tui',) for m in c)]
    print(f'library (outside tui): {len(lib)} cycles; tui: {len(cycles) - len(lib)} cycles, '
          f'{sum(len(c) for c in cycles) - sum(len(c) for c in lib)} files in them')
