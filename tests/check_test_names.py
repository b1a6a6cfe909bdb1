#!/usr/bin/python3
"""Every Catch2 TEST_CASE name under tests/ must survive ctest's discovery.

catch_discover_tests passes each name through a CMake list, where ';' separates items:
a name with ';' became two ctest entries that matched no test and ran nothing (and
passed). Usage: check_test_names.py <source dir>; exit 1 naming each offending test.
"""
import pathlib
import re
import sys

# TEST_CASE( followed by one or more adjacent string literals (a name may span lines).
TEST_CASE = re.compile(r'\bTEST_CASE\s*\(\s*((?:"(?:[^"\\]|\\.)*"\s*)+)')
LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"')
# Characters CMake lists or ctest's own test-name handling treat specially.
FORBIDDEN = {";": "CMake's list separator"}


def main() -> int:
    root = pathlib.Path(sys.argv[1]) / "tests"
    problems = []
    count = 0
    for path in sorted(root.rglob("*.cpp")):
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in TEST_CASE.finditer(text):
            count += 1
            name = "".join(LITERAL.findall(match.group(1)))
            for char, why in FORBIDDEN.items():
                if char in name:
                    line = text.count("\n", 0, match.start()) + 1
                    problems.append(f"{path.relative_to(root.parent)}:{line}: TEST_CASE \"{name}\": holds '{char}' ({why})")
    for p in problems:
        print(p)
    print(f"{count} test names checked, {len(problems)} refused")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
