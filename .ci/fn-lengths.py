#!/usr/bin/env python3
"""The longest functions under the given folders: `python3 .ci/fn-lengths.py src/exec src/cli`.

Counts the lines from a `fn` line to its closing brace, tests included (`mod tests` is
skipped unless --tests). Braces inside strings and comments are ignored roughly: enough for
a size report, not a parser."""
import re, signal, sys, pathlib

signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends the listing quietly

def strip(line):
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    return line.split('//')[0]

def functions(path, tests):
    lines = path.read_text().splitlines()
    in_tests = False
    i = 0
    while i < len(lines):
        text = strip(lines[i])
        if re.match(r'\s*mod tests\b', text):
            in_tests = True
            if not tests:
                return
        m = re.match(r'\s*(pub(\([^)]*\))?\s+)?(async\s+)?(const\s+)?fn\s+(\w+)', text)
        if m:
            depth, j, opened = 0, i, False
            while j < len(lines):
                t = strip(lines[j])
                if not opened and ';' in t and '{' not in t:
                    break
                depth += t.count('{') - t.count('}')
                opened = opened or '{' in t
                if opened and depth <= 0:
                    yield (j - i + 1, f"{path}:{i + 1} {m.group(5)}")
                    break
                j += 1
        i += 1

tests = '--tests' in sys.argv
found = []
for folder in [a for a in sys.argv[1:] if not a.startswith('--')]:
    for path in sorted(pathlib.Path(folder).rglob('*.rs')):
        found.extend(functions(path, tests))
for length, where in sorted(found, reverse=True)[:10]:
    print(f"{length:4} {where}")
