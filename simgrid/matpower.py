"""MATPOWER case files read the way MATLAB runs them, for the subset case files use.

Why this exists: many MATPOWER distribution cases (case33bw, case69, case85, case141, ...) give
branch impedances in ohms and loads in kW or kVA, and convert them with MATLAB statements after
the data blocks (`mpc.branch(:, [BR_R BR_X]) = ... / (Vbase^2 / Sbase);`, `... / 1e3;`, a
power factor for case141). Readers that only pick up the matrices (pandapower's `from_mpc`
through matpowercaseframes) skip those statements without a word, so the network they build
has loads a thousand times too large and impedances in the wrong unit. This module parses the
data blocks itself and interprets the statements in file order. Whatever it does not
understand is refused with one line naming the file and line - never skipped - because a
silently ignored statement is exactly the bug this module exists to fix.

Supported subset (a recursive-descent interpreter, no `eval`):

* Lexical: `%` comments, `%{ ... %}` block comments, `...` continuations, statements ended by
  `;`, `,` or a newline, numbers (`12`, `.5`, `1.5e-3`), names, `'...'` strings.
* `function mpc = caseXX` as the first statement and an `end` closing it as the last.
* `mpc.version = '2';`, `mpc.baseMVA = 50/3;` and `mpc.F = <expr>;` for F in bus, gen, branch,
  gencost. Data blocks are matrix literals `[ ... ]`: rows end with `;` or a newline, entries
  are separated by spaces or commas and are numbers or constant expressions (`12/sqrt(3)`,
  `-Inf`). Any other `mpc.F = [ ... ];` or `mpc.F = { ... };` data block (bus_name, areas,
  gentype, ...) is read and ignored.
* `[PQ, PV, ~, ...] = idx_bus;` (also idx_brch, idx_gen, idx_cost): MATPOWER's column-number
  constants, bound by position as MATLAB binds a function's outputs.
* `name = <expr>;` (a workspace variable, e.g. `pf = 0.85;`).
* `mpc.F(rows, cols) = <expr>;` where rows and cols are `:` or expressions giving positive
  integers (`1`, `BR_R`, `[BR_R BR_X]`, `[PD, QD]`).
* Expressions: numbers, variables, `pi`, `Inf`, `NaN`, `eps`, `mpc.F`, `mpc.F(rows, cols)`,
  matrix literals, parentheses, unary `+ -`, binary `+ - * / ^ .* ./ .^` with MATLAB meaning
  (`*` is the matrix product, `/` needs a scalar divisor, `^` scalar operands) and the
  one-argument functions sin cos tan asin acos atan sqrt abs. Values are 2-D float arrays,
  as in MATLAB.

Everything else - if/for/while, other functions, transposes, comparisons, `end` inside an
index, nested fields, growing a matrix by assignment, results that would be complex - raises
ConfigError.

Size caps. A case file is data, but its statements compute: a 4 kB file whose column times a
row asked for a 40,000 x 40,000 matrix (11.9 GiB). So the file, each statement's tokens, each
matrix and all the values a file computes are capped (see _MAX_FILE_BYTES and below), each
matrix's size checked from its operands' before it is allocated.

Files that are no case. An error quotes the statement it stopped at, which helps with a case
file; but a config can name any file (a symbolic link to /proc/self/environ, a key), so until
the file has shown itself to be a case - a `function mpc = ...` header or an `mpc.` assignment
has run - errors name the line and quote nothing of it.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

from simgrid.errors import ConfigError

# ------------------------------------------------------------------------------------------
# MATLAB names the interpreter knows


def _outputs(names: str, values: str) -> tuple[tuple[str, int], ...]:
    """Pair MATPOWER's output names with their column numbers (in the function's output order)."""
    return tuple(zip(names.split(), map(int, values.split()), strict=True))


# The outputs of MATPOWER's lib/idx_*.m, in the order of each function's output list (which is
# not always column order: idx_brch returns PF..MU_ST before ANGMIN, ANGMAX).
_IDX_FUNCTIONS = MappingProxyType(
    {
        "idx_bus": _outputs(
            "PQ PV REF NONE BUS_I BUS_TYPE PD QD GS BS BUS_AREA VM VA BASE_KV ZONE VMAX VMIN "
            "LAM_P LAM_Q MU_VMAX MU_VMIN",
            "1 2 3 4 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17",
        ),
        "idx_brch": _outputs(
            "F_BUS T_BUS BR_R BR_X BR_B RATE_A RATE_B RATE_C TAP SHIFT BR_STATUS PF QF PT QT "
            "MU_SF MU_ST ANGMIN ANGMAX MU_ANGMIN MU_ANGMAX",
            "1 2 3 4 5 6 7 8 9 10 11 14 15 16 17 18 19 12 13 20 21",
        ),
        "idx_gen": _outputs(
            "GEN_BUS PG QG QMAX QMIN VG MBASE GEN_STATUS PMAX PMIN MU_PMAX MU_PMIN MU_QMAX "
            "MU_QMIN PC1 PC2 QC1MIN QC1MAX QC2MIN QC2MAX RAMP_AGC RAMP_10 RAMP_30 RAMP_Q APF",
            "1 2 3 4 5 6 7 8 9 10 22 23 24 25 11 12 13 14 15 16 17 18 19 20 21",
        ),
        "idx_cost": _outputs(
            "PW_LINEAR POLYNOMIAL MODEL STARTUP SHUTDOWN NCOST COST", "1 2 1 2 3 4 5"
        ),
    }
)

# One-argument element-wise functions and the real domain outside which MATLAB goes complex.
_FUNCTIONS: MappingProxyType[str, tuple[Callable[[np.ndarray], np.ndarray], float, float]] = (
    MappingProxyType(
        {
            "sin": (np.sin, -np.inf, np.inf),
            "cos": (np.cos, -np.inf, np.inf),
            "tan": (np.tan, -np.inf, np.inf),
            "asin": (np.arcsin, -1.0, 1.0),
            "acos": (np.arccos, -1.0, 1.0),
            "atan": (np.arctan, -np.inf, np.inf),
            "sqrt": (np.sqrt, 0.0, np.inf),
            "abs": (np.abs, -np.inf, np.inf),
        }
    )
)

_CONSTANTS = MappingProxyType(
    {"pi": np.pi, "Inf": np.inf, "inf": np.inf, "NaN": np.nan, "nan": np.nan, "eps": 2.0**-52}
)

_KEYWORDS = frozenset(
    "break case catch classdef continue else elseif end for function global if otherwise "
    "parfor persistent return spmd switch try while".split()
)

# Fields that may be given by any expression (other fields only by a data-block literal).
_CORE_FIELDS = frozenset({"baseMVA", "bus", "gen", "branch", "gencost"})
_MIN_COLUMNS = MappingProxyType({"bus": 13, "gen": 10, "branch": 13})
_MAX_SHOWN = 120  # characters of a statement quoted in an error message

# Size caps, from the largest case MATPOWER 8.1 ships, case_SyntheticUSA.m (82,000 buses,
# 22.8 MB, read in 13 s at 300 MB peak): its largest matrix, branch, is 104,121 x 21 (2.19
# million values); it has 965,499 tokens (a data row of plain numbers is one), its longest
# statement 312,371; and its statements create 12.0 million values in all (each data row, then
# the rows joined into a matrix): 0.53 per byte of file.
_MAX_FILE_BYTES = 64 * 2**20  # 2.9 x case_SyntheticUSA.m; read whole, so it bounds the text
# A token takes 3 to 7 us to read and run, and 90 bytes while its statement runs; a file of
# one-character tokens would otherwise take minutes. At these caps a hostile file takes 30 s
# and 0.35 GB (two statements are held at once: the one running and the next).
_MAX_TOKENS = 2**22  # in the file: 4.3 x case_SyntheticUSA.m's
_MAX_STATEMENT_TOKENS = 2**20  # in one statement: 3.4 x its longest
_MAX_VALUES = 2**24  # values in one matrix (128 MiB of float64): 7.7 x its branch matrix
# All values a file's statements may create, per byte of file, but never fewer than one matrix
# may hold: a small file cannot compute gigabytes in small steps, and a file at the size cap
# at most 512 MiB of float64 in all. Of the cases MATPOWER ships and the 23 vendored in
# tests/data/matpower, none creates more than 0.93 per byte (case141, with its conversions).
_VALUES_PER_BYTE = 1

# ------------------------------------------------------------------------------------------
# Result


@dataclass(frozen=True, eq=False)
class MatpowerCase:
    """What the case file computes: MATPOWER's matrices after its statements ran (read-only).

    Bus numbers are MATPOWER's own (1-based); `to_ppc` makes the pandapower/PYPOWER input.
    `statements_applied` lists the executable statements that ran ("line N: text"), so a
    caller can see that, say, the ohm-to-per-unit conversion was applied.
    """

    name: str
    base_mva: float
    bus: np.ndarray
    gen: np.ndarray
    branch: np.ndarray
    gencost: np.ndarray | None
    statements_applied: tuple[str, ...]


class _Bad(Exception):
    """A statement the interpreter cannot run; `line` is where, when known."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.line = reason, line


class _BadData(_Bad):
    """A matrix literal that is not a numeric matrix (ragged, non-numeric, never closed)."""


class _NotACase(_Bad):
    """A data block `mpc.F = [...]` that is not a numeric matrix: the file is no case file."""


class _TooLarge(_Bad):
    """Beyond a size cap; the reason names sizes only, so it is shown for any file."""


class _Budget:
    """The values a file's statements create: one matrix, and all of them, within the caps.

    `take` is called with a result's shape before the result is allocated.
    """

    def __init__(self, text_chars: int) -> None:
        self.limit = max(_MAX_VALUES, _VALUES_PER_BYTE * text_chars)
        self.used = 0

    def take(self, shape: tuple[int, ...], what: str) -> None:
        rows, cols = shape
        values = rows * cols  # Python ints: the check itself cannot overflow
        if values > _MAX_VALUES:
            raise _TooLarge(
                f"{what} would be a {rows:,}x{cols:,} matrix ({values:,} values); "
                f"a matrix may hold at most {_MAX_VALUES:,} values"
            )
        self.used += values
        if self.used > self.limit:
            raise _TooLarge(
                f"{what} ({rows:,}x{cols:,}) brings the values the file computes to "
                f"{self.used:,}; a file of this size may compute at most {self.limit:,}"
            )


# ------------------------------------------------------------------------------------------
# Lexer


@dataclass(frozen=True, slots=True)
class _Token:
    """One token; `space` says whitespace preceded it, which separates entries inside [ ]."""

    kind: str  # num nums(a row of numbers) name str op row(separator in [ ] / { }) stop bad eof
    text: str
    line: int
    space: bool
    why: str = ""  # for `bad` tokens: what is wrong with `text`


_TOKEN_RE = re.compile(
    r"""(?P<ws>[ \t\r\f\v]+)
      | (?P<cont>\.\.\.[^\n]*\n?)
      | (?P<comment>%[^\n]*)
      | (?P<nl>\n)
      | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<name>[A-Za-z]\w*)
      | (?P<op>\.\*|\./|\.\^|\.\\|\.'|==|~=|<=|>=|&&|\|\||[-+*/\\^()\[\]{}=,;:.<>&|~!@])
      | (?P<quote>['"])""",
    re.VERBOSE,
)
# A matrix row of plain numbers (`1  -2.5, 3e-3`) up to `;`, `]`, a comment or the line end: the
# bulk of every data block, read as one token so large cases load in seconds.
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_NUMBER_ROW_RE = re.compile(
    rf"[ \t]*({_NUMBER}(?:(?:[ \t]*,[ \t]*|[ \t]+){_NUMBER})*)[ \t]*,?(?=[ \t]*(?:[;\]%\r\n]|$))"
)
_ROW_SPLIT_RE = re.compile(r"[ \t]*,[ \t]*|[ \t]+")
_BLOCK_END_RE = re.compile(r"^[ \t]*%\}[ \t]*\r?$", re.MULTILINE)
_OPENERS = MappingProxyType({")": "(", "]": "[", "}": "{"})


class _Lexer:
    """Tokeniser for the whole file.

    It keeps context (open brackets, the previous token) because MATLAB's newline, `;` and
    quote mean different things inside [ ] and after a value. Problems become `bad` tokens,
    so they are reported in file order, when the statement holding them runs.
    """

    def __init__(self, text: str) -> None:
        self.text, self.pos, self.line = text, 0, 1
        self.space = False  # whitespace since the previous token
        self.stack: list[str] = []  # open brackets
        self.prev: _Token | None = None

    def tokens(self) -> Iterator[_Token]:
        """All tokens, then a final statement end and an end-of-file marker."""
        while self.pos < len(self.text):
            tok = self._next()
            if tok is not None:
                self.space, self.prev = False, tok
                yield tok
        yield _Token("stop", "", self.line, False)
        yield _Token("eof", "", self.line, False)

    def _row_start(self) -> bool:
        """At the start of a row of a `[ ]` matrix (where a row of plain numbers may follow)."""
        prev = self.prev
        return (
            prev is not None
            and self.stack[-1:] == ["["]
            and (prev.kind == "row" or (prev.kind == "op" and prev.text == "["))
        )

    def _in_brackets(self) -> bool:
        return bool(self.stack) and self.stack[-1] in "[{"

    def _token(self, kind: str, text: str, why: str = "") -> _Token:
        return _Token(kind, text, self.line, self.space, why)

    def _next(self) -> _Token | None:
        """The next token from `pos` (None for whitespace, comments and continuations)."""
        if self._row_start():
            row = _NUMBER_ROW_RE.match(self.text, self.pos)
            if row:
                space = self.space or row.start(1) > self.pos
                self.pos = row.end()
                return _Token("nums", row.group(1), self.line, space)
        m = _TOKEN_RE.match(self.text, self.pos)
        if m is None:
            self.pos += 1
            char = self.text[self.pos - 1]
            return self._token("bad", char, f"unexpected character {char!r}")
        if m.lastgroup == "quote":
            return self._quote()
        kind, value = m.lastgroup or "", m.group()
        self.pos = m.end()
        if kind in ("ws", "cont"):
            self.space = True
            self.line += value.count("\n")
            return None
        if kind == "comment":
            self._block_comment(m.start())
            return None
        if kind == "nl":
            return self._newline()
        if kind == "num" and re.match(r"\w", self.text[self.pos : self.pos + 1]):
            bad = value + self.text[self.pos]
            self.pos += 1
            return self._token("bad", bad, f"malformed number {bad!r}")
        return self._punctuation(value) if kind == "op" else self._token(kind, value)

    def _block_comment(self, start: int) -> None:
        """Skip a `%{ ... %}` block comment (each marker alone on its line)."""
        line_start = self.text.rfind("\n", 0, start) + 1
        if self.text[start : self.pos].strip() != "%{" or self.text[line_start:start].strip():
            return
        close = _BLOCK_END_RE.search(self.text, self.pos)
        stop = len(self.text) if close is None else close.end()
        self.line += self.text.count("\n", start, stop)
        self.pos = stop

    def _newline(self) -> _Token:
        """A newline separates rows inside [ ] / { } and ends a statement elsewhere."""
        if self._in_brackets():
            tok = self._token("row", ";")
        else:
            self.stack.clear()  # a newline inside ( ) ends the statement; the parser reports it
            tok = self._token("stop", "\n")
        self.line += 1
        return tok

    def _punctuation(self, value: str) -> _Token:
        """Classify `;` and `,` by context and keep track of open brackets."""
        if value in "([{":
            self.stack.append(value)
        elif value in ")]}" and self.stack and self.stack[-1] == _OPENERS[value]:
            self.stack.pop()
        if value in ";," and not self.stack:
            return self._token("stop", value)
        if value == ";" and self._in_brackets():
            return self._token("row", value)
        return self._token("op", value)

    def _quote(self) -> _Token:
        """A quote starts a string unless it follows a value (then it is MATLAB's transpose)."""
        prev, quote = self.prev, self.text[self.pos]
        after_value = prev is not None and (
            prev.kind in ("num", "name") or (prev.kind == "op" and prev.text in ")]}'")
        )
        if quote == "'" and after_value and not (self._in_brackets() and self.space):
            self.pos += 1
            return self._token("op", "'")
        i = self.pos + 1
        while True:
            j, newline = self.text.find(quote, i), self.text.find("\n", i)
            if j < 0 or 0 <= newline < j:
                start, self.pos = self.pos, len(self.text) if newline < 0 else newline
                return self._token("bad", self.text[start : self.pos], "string never closed")
            if not self.text.startswith(quote * 2, j):
                break
            i = j + 2
        value = self.text[self.pos + 1 : j].replace(quote * 2, quote)
        self.pos = j + 1
        return self._token("str", value)


# ------------------------------------------------------------------------------------------
# Statements


@dataclass(frozen=True)
class _Statement:
    """The tokens of one statement (ending with its `stop` token) and where it starts."""

    tokens: tuple[_Token, ...]

    @property
    def line(self) -> int:
        return self.tokens[0].line

    @property
    def text(self) -> str:
        """The statement as written, on one line, without comments and continuations."""
        parts, toks = [], self.tokens[:-1]
        for k, tok in enumerate(toks):
            if tok.kind == "row" and (k == 0 or parts[-1].strip() in ("[", "{", ";")):
                continue  # a newline right after '[' or another row separator shows nothing
            shown = {"str": f"'{tok.text}'", "row": ";"}.get(tok.kind, tok.text)
            parts.append((" " if tok.space and parts else "") + shown)
        return "".join(parts)


def _statements(tokens: Iterator[_Token]) -> Iterator[_Statement]:
    """Group tokens into statements; empty statements (blank lines, `;;`) are dropped.

    Lazily, so only the statement that runs (and the next) is held as tokens, up to 90 times
    the text they come from; the caps _MAX_TOKENS and _MAX_STATEMENT_TOKENS bound them.
    """
    current: list[_Token] = []
    for count, tok in enumerate(tokens, start=1):
        if tok.kind == "eof":
            return
        current.append(tok)
        if count > _MAX_TOKENS:
            raise _TooLarge(
                f"the file runs past {_MAX_TOKENS:,} tokens (numbers, names, operators; a "
                f"row of plain numbers is one) on line {tok.line}",
                tok.line,
            )
        if len(current) > _MAX_STATEMENT_TOKENS:
            raise _TooLarge(
                f"the statement starting on line {current[0].line} runs past "
                f"{_MAX_STATEMENT_TOKENS:,} tokens (numbers, names, operators) to line "
                f"{tok.line}",
                current[0].line,
            )
        if tok.kind == "stop":
            if len(current) > 1:
                yield _Statement(tuple(current))
            current = []


# ------------------------------------------------------------------------------------------
# Values


def _scalar(x: float) -> np.ndarray:
    return np.array([[x]], dtype=np.float64)


def _size(a: np.ndarray) -> str:
    return "x".join(map(str, a.shape))


def _elementwise(
    op: str, a: np.ndarray, b: np.ndarray, budget: _Budget, shown: str = ""
) -> np.ndarray:
    """`+ - .* ./ .^` with MATLAB's implicit expansion (numpy broadcasting on 2-D arrays).

    `shown`: the operator as written (`*` with a scalar operand runs as `.*`).
    """
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise _Bad(f"sizes {_size(a)} and {_size(b)} do not match for {op!r}") from None
    # a column and a row expand to a matrix: n + m values written can ask for n x m
    budget.take(shape, f"{_size(a)} {shown or op} {_size(b)}")
    if op == ".^":
        complex_ = (a < 0) & (np.mod(b, 1) != 0) & np.isfinite(b)
        if np.any(complex_):
            raise _Bad("a negative number to a fractional power would be complex")
    with np.errstate(all="ignore"):
        ops = {"+": np.add, "-": np.subtract, ".*": np.multiply, "./": np.divide}
        return np.power(a, b) if op == ".^" else ops[op](a, b)


def _binary(op: str, a: np.ndarray, b: np.ndarray, budget: _Budget) -> np.ndarray:
    """A binary operator with MATLAB's meaning; matrix forms other than `*` are refused."""
    if op == "*":
        if a.size == 1 or b.size == 1:
            return _elementwise(".*", a, b, budget, shown="*")
        if a.shape[1] != b.shape[0]:
            raise _Bad(f"matrix product of {_size(a)} and {_size(b)}: inner sizes differ")
        budget.take((a.shape[0], b.shape[1]), f"the matrix product {_size(a)} * {_size(b)}")
        return a @ b
    if op == "/":
        if b.size != 1:
            raise _Bad("division by a matrix (mrdivide) is not supported; use ./")
        return _elementwise("./", a, b, budget, shown="/")
    if op == "^":
        if a.size != 1 or b.size != 1:
            raise _Bad("matrix power is not supported; use .^")
        return _elementwise(".^", a, b, budget, shown="^")
    return _elementwise(op, a, b, budget)


def _call(name: str, arg: np.ndarray, budget: _Budget) -> np.ndarray:
    """Apply a supported function, refusing arguments for which MATLAB returns complex numbers."""
    fn, low, high = _FUNCTIONS[name]
    budget.take(arg.shape, f"{name}({_size(arg)})")
    outside = (arg < low) | (arg > high)
    if np.any(outside):
        bad = float(arg[outside][0])
        raise _Bad(f"{name}({bad:g}) would be complex; not supported")
    with np.errstate(all="ignore"):
        return fn(arg)


def _hcat(parts: list[np.ndarray], line: int, budget: _Budget) -> np.ndarray:
    """Concatenate one row of a matrix literal (empty parts vanish, as in MATLAB)."""
    parts = [p for p in parts if p.size]
    if not parts:
        return np.zeros((0, 0))
    if len({p.shape[0] for p in parts}) > 1:
        raise _BadData(f"entries of different heights on line {line}", line)
    # `[x x x x]` of a variable x grows a matrix by the length of its name per copy
    budget.take((parts[0].shape[0], sum(p.shape[1] for p in parts)), "a matrix literal's row")
    return np.hstack(parts)


def _vcat(rows: list[tuple[np.ndarray, int]], budget: _Budget) -> np.ndarray:
    """Stack the rows of a matrix literal; rows of different widths are an error (ragged)."""
    rows = [(r, line) for r, line in rows if r.size]
    if not rows:
        return np.zeros((0, 0))
    width = rows[0][0].shape[1]
    for k, (r, line) in enumerate(rows, start=1):
        if r.shape[1] != width:
            raise _BadData(
                f"row {k} (line {line}) has {r.shape[1]} columns, row 1 has {width}", line
            )
    budget.take((sum(r.shape[0] for r, _ in rows), width), "a matrix literal")
    return np.vstack([r for r, _ in rows])


# ------------------------------------------------------------------------------------------
# Interpreter


@dataclass(frozen=True)
class _Workspace:
    """MATLAB's state while the file runs; the dicts are filled in as statements execute.

    fields: mpc's fields (2-D float arrays; the version string; None for an ignored cell
    array). names: the workspace variables (2-D float arrays). budget: the values created so far.
    """

    budget: _Budget
    fields: dict[str, np.ndarray | str | None] = field(default_factory=dict)
    names: dict[str, np.ndarray] = field(default_factory=dict)


class _Parser:
    """Recursive descent over one statement's tokens, evaluating as it goes.

    The files have no side effects inside expressions, so evaluating while parsing is the
    same as building a tree first, and shorter. `mat` is true inside [ ], where whitespace
    separates entries (`[1 -2]` has two entries, `[1 - 2]` one), as in MATLAB.
    """

    def __init__(self, stmt: _Statement, ws: _Workspace) -> None:
        self.toks, self.i, self.ws = stmt.tokens, 0, ws

    # -- token helpers
    def peek(self, k: int = 0) -> _Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def take(self) -> _Token:
        tok = self.peek()
        if tok.kind == "bad":
            raise _Bad(tok.why, tok.line)
        self.i += 1
        return tok

    def at(self, text: str, kind: str = "op") -> bool:
        tok = self.peek()
        return tok.kind == kind and tok.text == text

    def expect(self, text: str) -> _Token:
        if not self.at(text):
            raise self.unexpected(f"expected {text!r}")
        return self.take()

    def expect_stop(self) -> None:
        if self.peek().kind != "stop":
            raise self.unexpected("expected the end of the statement")

    def unexpected(self, hint: str) -> _Bad:
        tok = self.peek()
        if tok.kind == "bad":
            return _Bad(tok.why, tok.line)
        shown = {"stop": "end of statement", "row": "line break or ';'"}.get(tok.kind)
        return _Bad(f"{hint}, found {shown or repr(tok.text)}", tok.line)

    # -- expressions
    def expr(self, mat: bool = False) -> np.ndarray:
        """Sum level: `+ -` (inside [ ], `a -b` ends the entry before `-b`)."""
        value = self.term(mat)
        while self.peek().kind == "op" and self.peek().text in "+-":
            op = self.peek()
            if mat and op.space and not self.peek(1).space:
                break
            self.take()
            value = _binary(op.text, value, self.term(mat), self.ws.budget)
        return value

    def term(self, mat: bool) -> np.ndarray:
        """Product level: `* / .* ./`."""
        value = self.unary(mat)
        while self.peek().kind == "op" and self.peek().text in ("*", "/", ".*", "./"):
            op = self.take().text
            value = _binary(op, value, self.unary(mat), self.ws.budget)
        return value

    def unary(self, mat: bool) -> np.ndarray:
        """Unary `+ -` (binds looser than `^`, so -2^2 is -4 as in MATLAB)."""
        if self.peek().kind == "op" and self.peek().text in "+-":
            sign = self.take().text
            return self.signed(sign, self.unary(mat))
        return self.power(mat)

    def signed(self, sign: str, value: np.ndarray) -> np.ndarray:
        """`-value` (a new matrix, so within the caps) or `+value`."""
        if sign == "+":
            return value
        self.ws.budget.take(value.shape, f"-{_size(value)}")
        return -value

    def power(self, mat: bool) -> np.ndarray:
        """Power level: `^ .^`, left-associative as in MATLAB; the exponent may carry a sign."""
        value = self.primary(mat)
        while self.peek().kind == "op" and self.peek().text in ("^", ".^"):
            op = self.take().text
            value = _binary(op, value, self.exponent(mat), self.ws.budget)
        if self.at("'") or self.at(".'"):
            raise _Bad("transpose is not supported", self.peek().line)
        return value

    def exponent(self, mat: bool) -> np.ndarray:
        """The right operand of `^`: MATLAB allows a sign there (`2^-1`)."""
        if self.peek().kind == "op" and self.peek().text in "+-":
            sign = self.take().text
            return self.signed(sign, self.exponent(mat))
        return self.primary(mat)

    def primary(self, mat: bool) -> np.ndarray:
        """A number, a name, `mpc.F(...)`, `( expr )` or a matrix literal."""
        tok = self.peek()
        if tok.kind == "num":
            return _scalar(float(self.take().text))
        if tok.kind == "nums":
            numbers = _ROW_SPLIT_RE.split(self.take().text)
            self.ws.budget.take((1, len(numbers)), "a row of numbers")
            return np.array([[float(x) for x in numbers]])
        if tok.kind == "name":
            return self.field_value(mat) if tok.text == "mpc" else self.name_value(mat)
        if self.at("("):
            self.take()
            value = self.expr()
            self.expect(")")
            return value
        if self.at("["):
            return self.matrix()
        if tok.kind == "str" and mat:
            raise _BadData(f"non-numeric entry '{tok.text}'", tok.line)
        raise self.unexpected("expected a value")

    def name_value(self, mat: bool) -> np.ndarray:
        """A variable, a constant, or a call of one of the supported functions."""
        tok = self.take()
        name, called = tok.text, self.at("(") and not (mat and self.peek().space)
        if name in self.ws.names:
            if called:
                raise _Bad(f"indexing the variable {name!r} is not supported", tok.line)
            return self.ws.names[name]
        if name in _FUNCTIONS:
            if not called:
                raise _Bad(f"{name} needs an argument in parentheses", tok.line)
            self.take()
            arg = self.expr()
            if self.at(","):
                raise _Bad(f"{name} takes one argument", tok.line)
            self.expect(")")
            return _call(name, arg, self.ws.budget)
        if name in _CONSTANTS and not called:
            return _scalar(_CONSTANTS[name])
        if mat and not called:
            raise _BadData(f"non-numeric entry {name!r}", tok.line)
        what = "function" if called else "name"
        raise _Bad(f"unknown {what} {name!r}", tok.line)

    def matrix(self) -> np.ndarray:
        """A matrix literal `[ ... ]`: rows end with `;` or a newline, entries with `,`/space."""
        opener = self.take()
        rows: list[tuple[np.ndarray, int]] = []
        while not self.at("]"):
            self.check_row(opener)
            line, parts, separated = self.peek().line, [], True
            while self.peek().kind != "row" and not self.at("]"):
                if self.at(","):
                    self.take()
                    separated = True
                    continue
                if not (separated or self.peek().space):
                    raise self.unexpected("expected ',' or a space between entries")
                parts.append(self.expr(mat=True))
                separated = False
            if self.peek().kind == "row":
                self.take()
            rows.append((_hcat(parts, line, self.ws.budget), line))
        self.take()
        return _vcat(rows, self.ws.budget)

    def check_row(self, opener: _Token) -> None:
        """A row running into the end of the statement or an `=` means `]` is missing."""
        for k in range(self.i, len(self.toks)):
            tok = self.toks[k]
            if tok.kind == "row" or (tok.kind == "op" and tok.text == "]"):
                return
            if tok.kind == "stop" or (tok.kind == "op" and tok.text == "="):
                why = f"'[' on line {opener.line} is never closed (no ']')"
                raise _BadData(why, opener.line)

    # -- mpc fields
    def field_name(self) -> _Token:
        """`mpc.NAME`: returns the NAME token; nested fields are refused."""
        self.take()
        self.expect(".")
        tok = self.take()
        if tok.kind != "name":
            raise _Bad(f"expected a field name after 'mpc.', found {tok.text!r}", tok.line)
        if self.at("."):
            raise _Bad(f"nested fields (mpc.{tok.text}.…) are not supported", tok.line)
        return tok

    def numeric_field(self, tok: _Token) -> np.ndarray:
        """The numeric matrix `mpc.NAME` as defined so far (so it can be read or assigned)."""
        if tok.text not in self.ws.fields:
            raise _Bad(f"mpc.{tok.text} is not defined (yet)", tok.line)
        value = self.ws.fields[tok.text]
        if not isinstance(value, np.ndarray):
            raise _Bad(f"mpc.{tok.text} is not a numeric matrix", tok.line)
        return value

    def field_value(self, mat: bool) -> np.ndarray:
        """`mpc.F` or `mpc.F(rows, cols)` as a value."""
        tok = self.field_name()
        value = self.numeric_field(tok)
        if not self.at("(") or (mat and self.peek().space):
            return value
        rows, cols = self.index_pair(value, tok.text)
        # an index may repeat rows: mpc.bus(v, v) of a long vector v is a v-by-v matrix
        self.ws.budget.take((rows.size, cols.size), f"mpc.{tok.text}(rows, cols)")
        return value[np.ix_(rows, cols)]

    def index_pair(
        self, target: np.ndarray, name: str, grow: str = ""
    ) -> tuple[np.ndarray, np.ndarray]:
        """`(rows, cols)` as 0-based integer arrays, checked against the matrix's size."""
        self.expect("(")
        rows = self.index(target.shape[0], f"rows of mpc.{name}{grow}")
        if not self.at(","):
            raise self.unexpected("expected ',' (only mpc.F(rows, cols) indexing is supported)")
        self.take()
        cols = self.index(target.shape[1], f"columns of mpc.{name}{grow}")
        self.expect(")")
        return rows, cols

    def index(self, n: int, what: str) -> np.ndarray:
        """One subscript: `:` (all) or positive whole numbers within the dimension."""
        line = self.peek().line
        if self.at(":") and self.peek(1).text in (",", ")"):
            self.take()
            self.ws.budget.take((1, n), "the index ':'")
            return np.arange(n)
        if self.at("end", kind="name"):
            raise _Bad("'end' inside an index is not supported", line)
        value = self.expr().ravel()
        if self.at(":"):
            raise _Bad("ranges (a:b) are not supported", line)
        whole = np.isfinite(value) & (value >= 1) & (np.mod(value, 1) == 0)
        if not np.all(whole):
            bad = value[~whole][0]
            raise _Bad(f"index {bad:g} is not a positive whole number", line)
        if value.size and value.max() > n:
            raise _Bad(f"index {value.max():g} exceeds the {n} {what}", line)
        self.ws.budget.take((1, value.size), "an index")
        return value.astype(np.int64) - 1


# ------------------------------------------------------------------------------------------
# Statement forms


def _execute(stmt: _Statement, ws: _Workspace, first: bool, closing: bool) -> bool:
    """Run one statement; True when it computed something (listed in statements_applied).

    `first`: the statement may be the `function mpc = ...` header; `closing`: it is the last
    statement of a file with that header, so a bare `end` closes the function.
    """
    p = _Parser(stmt, ws)
    tok = p.peek()
    if tok.kind == "bad":
        raise _Bad(tok.why, tok.line)
    if tok.kind == "name" and tok.text == "function":
        _function_header(p, first)
        return False
    if tok.kind == "name" and tok.text == "end" and closing:
        p.take()
        p.expect_stop()
        return False
    if tok.kind == "name" and tok.text in _KEYWORDS:
        raise _Bad(f"MATLAB keyword {tok.text!r} is not supported (no control flow)", tok.line)
    if p.at("["):
        _idx_assignment(p)
        return True
    if tok.kind == "name" and tok.text == "mpc":
        return _field_assignment(p)
    if tok.kind == "name" and p.peek(1).text == "=" and p.peek(1).kind == "op":
        _variable_assignment(p)
        return True
    raise _Bad(f"only assignments are supported, not {tok.text!r} ...", tok.line)


def _function_header(p: _Parser, first: bool) -> None:
    """`function mpc = caseXX` (or `caseXX()`), allowed only as the file's first statement."""
    tok = p.take()
    if not first:
        raise _Bad("functions other than the case function itself are not supported", tok.line)
    out = p.take()
    if out.text != "mpc":
        raise _Bad("the case function must return the struct 'mpc'", out.line)
    p.expect("=")
    if p.peek().kind != "name":
        raise p.unexpected("expected the function name")
    p.take()
    if p.at("("):
        p.take()
        p.expect(")")
    p.expect_stop()


def _idx_assignment(p: _Parser) -> None:
    """`[A, B, ~, ...] = idx_bus;`: bind MATPOWER's column constants by output position."""
    p.take()
    names: list[str] = []
    while not p.at("]"):
        tok = p.peek()
        if tok.kind == "name" or p.at("~"):
            names.append(p.take().text)
        elif p.at(","):
            p.take()
        else:
            raise p.unexpected("expected output names")
    p.take()
    p.expect("=")
    fn = p.take()
    if fn.text not in _IDX_FUNCTIONS:
        known = ", ".join(_IDX_FUNCTIONS)
        raise _Bad(f"unknown function {fn.text!r} (multiple outputs only from {known})", fn.line)
    if p.at("("):
        p.take()
        p.expect(")")
    p.expect_stop()
    outputs = _IDX_FUNCTIONS[fn.text]
    if len(names) > len(outputs):
        raise _Bad(f"{fn.text} returns {len(outputs)} values, not {len(names)}", fn.line)
    for name, (_, column) in zip(names, outputs, strict=False):
        if name != "~":
            _check_assignable(name, fn.line)
            p.ws.names[name] = _scalar(column)


def _check_assignable(name: str, line: int) -> None:
    """Refuse variables that would shadow mpc or a function the interpreter calls."""
    if name == "mpc" or name in _FUNCTIONS or name in _IDX_FUNCTIONS or name in _KEYWORDS:
        raise _Bad(f"assigning to {name!r} is not supported", line)


def _variable_assignment(p: _Parser) -> None:
    """`name = expr;` (a workspace variable such as Vbase or pf)."""
    tok = p.take()
    _check_assignable(tok.text, tok.line)
    p.take()
    value = p.expr()
    p.expect_stop()
    p.ws.names[tok.text] = value


def _field_assignment(p: _Parser) -> bool:
    """`mpc.F = ...` or `mpc.F(rows, cols) = ...`; True unless it is a plain data block."""
    tok = p.field_name()
    if p.at("("):
        _indexed_assignment(p, tok)
        return True
    p.expect("=")
    if tok.text == "version":
        _version_assignment(p)
        return False
    if p.at("{"):
        _skip_cell(p, tok.text)
        p.ws.fields[tok.text] = None
        return False
    start = p.i
    try:
        value = p.expr()
    except _BadData as err:
        raise _NotACase(f"mpc.{tok.text}: {err.reason}", err.line) from None
    p.expect_stop()
    literal = _is_literal(p.toks[start : p.i])
    if tok.text not in _CORE_FIELDS and not literal:
        raise _Bad(f"unknown field mpc.{tok.text} (only data blocks may define it)", tok.line)
    if tok.text == "baseMVA" and value.size != 1:
        raise _NotACase(f"mpc.baseMVA must be one number, not {_size(value)}", tok.line)
    p.ws.fields[tok.text] = value
    return not literal


def _is_literal(toks: tuple[_Token, ...]) -> bool:
    """A data block: one matrix literal or one (signed) number, not a computation."""
    if toks and toks[0].text == "[" and toks[0].kind == "op":
        depth = 0
        for k, tok in enumerate(toks):
            depth += {"[": 1, "]": -1}.get(tok.text, 0) if tok.kind == "op" else 0
            if depth == 0:
                return k == len(toks) - 1
    kinds = [t.kind if t.kind != "op" else t.text for t in toks]
    return kinds in (["num"], ["-", "num"], ["+", "num"])


def _version_assignment(p: _Parser) -> None:
    """`mpc.version = '2';` (checked once the file has run: a case may define it anywhere)."""
    tok = p.take()
    if tok.kind != "str":
        raise _Bad("mpc.version must be a string such as '2'", tok.line)
    p.expect_stop()
    p.ws.fields["version"] = tok.text


def _skip_cell(p: _Parser, name: str) -> None:
    """Read over a cell array `{ ... }` (names and the like, which the importer ignores)."""
    opener, depth = p.take(), 1
    while depth:
        tok = p.take()
        if tok.kind == "stop" or (tok.kind == "op" and tok.text == "="):
            reason = f"mpc.{name}: '{{' on line {opener.line} is never closed (no '}}')"
            raise _NotACase(reason, opener.line)
        if tok.kind == "op" and tok.text in "{}":
            depth += 1 if tok.text == "{" else -1
    p.expect_stop()


def _indexed_assignment(p: _Parser, tok: _Token) -> None:
    """`mpc.F(rows, cols) = expr;` within the matrix's current size (no growing)."""
    target = p.numeric_field(tok)
    rows, cols = p.index_pair(target, tok.text, " (growing a matrix is not supported)")
    p.expect("=")
    value = p.expr()
    p.expect_stop()
    shape = (rows.size, cols.size)
    if value.size == 1:
        value = np.broadcast_to(value, shape)
    elif value.shape != shape:
        vectors = min(shape) == 1 and min(value.shape) == 1 and value.size == rows.size * cols.size
        if not vectors:
            raise _Bad(f"cannot assign {_size(value)} values to a {shape[0]}x{shape[1]} selection")
        value = value.reshape(shape)
    target[np.ix_(rows, cols)] = value


# ------------------------------------------------------------------------------------------
# Public API


def read_matpower(path: Path, source: str = "<config>", key: str = "network.file") -> MatpowerCase:
    """Read a MATPOWER case file and run its statements; ConfigError (one line) if it can't."""
    path = Path(path)
    text = _read_text(path, source, key)
    ws, applied = _Workspace(_Budget(len(text))), []
    statements = _statements(_Lexer(text).tokens())
    stmt: _Statement | None = None
    case_like = False  # a `function mpc = ...` header or an `mpc.` assignment has run
    try:
        following = next(statements, None)
        if following is None:
            why = "not a MATPOWER case: the file has no statements (empty or only comments)"
            raise ConfigError(source, key, str(path), why)
        header = following.tokens[0].text == "function"
        first = True
        while following is not None:
            # one statement of lookahead: a bare `end` closes the function only as the last
            stmt, following = following, next(statements, None)
            if _execute(stmt, ws, first=first, closing=header and following is None):
                applied.append(f"line {stmt.line}: {stmt.text.rstrip(';,')}")
            case_like = case_like or _case_like(stmt.tokens)
            first = False
    except _Bad as err:
        raise _statement_error(err, stmt, case_like, path, source, key) from None
    return _build_case(ws, path, source, key, tuple(applied))


def _case_like(tokens: tuple[_Token, ...]) -> bool:
    """The statement is `function mpc = ...` or an `mpc.` assignment (as a case begins)."""
    texts = [t.text for t in tokens[:3] if t.kind in ("name", "op")]
    return texts[:3] == ["function", "mpc", "="] or texts[:2] == ["mpc", "."]


def _read_text(path: Path, source: str, key: str) -> str:
    """The file as text: unreadable, oversized or non-UTF-8 files are one-line ConfigErrors."""

    def refuse(why: str) -> ConfigError:
        return ConfigError(source, key, str(path), why)

    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer before fstat can refuse it
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise refuse(f"cannot be read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise refuse(f"cannot be read (not a regular file but {_file_kind(info.st_mode)})")
        if info.st_size > _MAX_FILE_BYTES:
            raise refuse(_too_large(info.st_size))
        with os.fdopen(os.dup(fd), "rb") as fh:
            # one byte more than the file holds shows it growing (read(n) reserves n bytes)
            raw = fh.read(info.st_size + 1)
    except OSError as exc:
        raise refuse(f"cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(raw) > info.st_size:
        # /proc and /sys files claim to be regular files of size 0 (or 4096) and are made up
        # as they are read; a case file does not change while it is read
        raise refuse("cannot be read (it grew while read: a /proc-like file, not a case file)")
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        # the byte is content: named only when the text before it begins as a case does
        where = f"on line {line}"
        if _begins_as_case(raw[: exc.start]):
            where = f"byte 0x{raw[exc.start]:02x} {where}"
        why = f"not a MATPOWER case: not UTF-8 text ({where})"
        raise ConfigError(source, key, f"{path}:{line}", why) from None


def _begins_as_case(raw: bytes) -> bool:
    """The (UTF-8) text's first statement has the form of a case's (see _case_like)."""
    try:
        first = next(_statements(_Lexer(raw.decode("utf-8")).tokens()), None)
    except _Bad:
        return False
    return first is not None and _case_like(first.tokens)


def _file_kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "a directory",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((name for test, name in kinds.items() if test(mode)), "a special file")


def _too_large(size: int) -> str:
    return (
        f"too large for a MATPOWER case: {size:,} bytes, more than {_MAX_FILE_BYTES:,} "
        "(the largest case MATPOWER ships, case_SyntheticUSA.m, has 22,841,930)"
    )


def _statement_error(
    err: _Bad, stmt: _Statement | None, case_like: bool, path: Path, source: str, key: str
) -> ConfigError:
    """Turn an interpreter failure into the one-line ConfigError naming file and line.

    The statement is quoted only once the file has shown itself to be a case (`case_like`);
    before that, the reason is left out too, as it may quote a name or number of the file.
    """
    line = err.line or (stmt.line if stmt is not None else 1)
    where = f"{path}:{line}"
    if isinstance(err, _TooLarge):
        return ConfigError(source, key, where, f"too large for a MATPOWER case: {err.reason}")
    if not case_like:
        why = (
            "not a MATPOWER case: it does not begin as one ('function mpc = ...' or an 'mpc.' "
            f"assignment) and line {line} is no statement of one; the text of such files is "
            "not shown"
        )
        return ConfigError(source, key, where, why)
    if isinstance(err, _NotACase):
        return ConfigError(source, key, where, f"not a MATPOWER case: {err.reason}")
    text = stmt.text if stmt is not None else ""
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 3] + "..."
    return ConfigError(
        source, key, where, f"MATPOWER statement not understood: {text!r}; {err.reason}"
    )


def _build_case(
    ws: _Workspace, path: Path, source: str, key: str, applied: tuple[str, ...]
) -> MatpowerCase:
    """Check the fields a case must have and freeze them into a MatpowerCase."""

    def bad(reason: str) -> ConfigError:
        return ConfigError(source, key, str(path), f"not a MATPOWER case: {reason}")

    missing = [f"mpc.{f}" for f in ("baseMVA", "bus", "gen", "branch") if f not in ws.fields]
    if missing:
        raise bad(f"no {', '.join(missing)} (a case defines mpc.baseMVA, bus, gen and branch)")
    mats = {f: ws.fields[f] for f in ("baseMVA", "bus", "gen", "branch")}
    for name, value in mats.items():
        if not isinstance(value, np.ndarray):
            raise bad(f"mpc.{name} is not numeric")
    base = float(mats["baseMVA"].item())
    if not (np.isfinite(base) and base > 0):
        raise bad(f"mpc.baseMVA = {base:g} must be a positive number")
    _check_version(ws, mats["gen"], bad)
    for name, cols in _MIN_COLUMNS.items():
        shape = mats[name].shape
        if shape[0] == 0 or shape[1] < cols:
            raise bad(f"mpc.{name} is {shape[0]}x{shape[1]}; it needs rows of >= {cols} columns")
    _check_bus_numbers(mats["bus"], mats["gen"], mats["branch"], bad)
    gencost = ws.fields.get("gencost")
    return MatpowerCase(
        name=path.stem,
        base_mva=base,
        bus=_frozen(mats["bus"]),
        gen=_frozen(mats["gen"]),
        branch=_frozen(mats["branch"]),
        gencost=_frozen(gencost) if isinstance(gencost, np.ndarray) else None,
        statements_applied=applied,
    )


def _check_version(ws: _Workspace, gen: np.ndarray, bad: Callable[[str], ConfigError]) -> None:
    """Only case format version 2 (MATPOWER's loadcase assumes 1 when a short gen has none)."""
    version = ws.fields.get("version")
    if version is None and gen.shape[1] < 21:
        raise bad("no mpc.version and fewer than 21 gen columns: case format version 1")
    if version is not None and version != "2":
        raise bad(f"mpc.version = {version!r}; only case format version '2' is supported")


def _check_bus_numbers(
    bus: np.ndarray, gen: np.ndarray, branch: np.ndarray, bad: Callable[[str], ConfigError]
) -> None:
    """Bus numbers are unique positive integers, and gens and branches name existing buses."""
    ids = bus[:, 0]
    if not np.all(np.isfinite(ids) & (ids >= 1) & (np.mod(ids, 1) == 0)):
        raise bad("mpc.bus column 1 (bus numbers) must hold positive whole numbers")
    if np.unique(ids).size != ids.size:
        raise bad("mpc.bus has duplicate bus numbers")
    for name, refs in (("gen", gen[:, :1]), ("branch", branch[:, :2])):
        unknown = ~np.isin(refs, ids)
        if np.any(unknown):
            row = int(np.argwhere(unknown)[0][0]) + 1
            raise bad(f"mpc.{name} row {row} names bus {refs[unknown][0]:g}, not in mpc.bus")


def _frozen(a: np.ndarray) -> np.ndarray:
    """A read-only float copy, so a MatpowerCase cannot be changed behind its callers' backs."""
    out = np.array(a, dtype=np.float64)
    out.flags.writeable = False
    return out


def to_ppc(case: MatpowerCase) -> dict:
    """The PYPOWER dict for pandapower.converter.from_ppc, prepared as pandapower's from_mpc does,
    and so that pandapower builds MATPOWER's model of it.

    Bus numbers become 0-based (so pandapower bus index = MATPOWER bus number - 1, as with
    from_mpc) and a zero TAP ratio (a line) becomes 1. Two things from_ppc (pandapower 3.5)
    gets wrong are put right first:

    * MATPOWER puts a transformer's ratio at the branch's from bus; from_ppc puts it at the
      higher-voltage bus. A tapped branch whose from bus is the lower-voltage side is turned
      round into its exact equivalent (ratio 1/t and shift -phi at the other end, impedance
      x t^2, charging / t^2): case300 has 16, whose import was a different network (0.11 pu
      off MATPOWER).
    * MATPOWER splits a branch's charging b between its ends, the from end's divided by t^2
      with the rest of that end; from_ppc makes a tapped transformer's b its magnetising
      branch, which is another admittance. That charging becomes bus shunts (b/2 t^2 at the
      from bus, b/2 at the to bus), exactly MATPOWER's.
    * At a bus with several generators from_ppc makes the first one listed the one that holds
      the voltage and the others fixed injections: generators in service come first, so that
      an out-of-service one listed first does not leave a generator bus without control.

    Arrays are fresh, writable copies.
    """
    bus, gen, branch = (np.array(m, dtype=np.float64) for m in (case.bus, case.gen, case.branch))
    bus[:, 0] -= 1
    gen[:, 0] -= 1
    branch[:, :2] -= 1
    branch[branch[:, _TAP] == 0, _TAP] = 1.0
    _reverse_low_side_taps(bus, branch)
    _charging_of_taps_to_shunts(bus, branch, case.base_mva)
    order = np.lexsort((np.arange(len(gen)), gen[:, _GEN_STATUS] <= 0))  # stable
    ppc: dict = {
        "version": "2",
        "baseMVA": case.base_mva,
        "bus": bus,
        "gen": gen[order],
        "branch": branch,
    }
    if case.gencost is not None and case.gencost.size:
        ppc["gencost"] = np.array(case.gencost, dtype=np.float64)[order]
    return ppc


# MATPOWER's column positions (0-based) used by to_ppc
_BASE_KV, _TAP, _SHIFT, _GEN_STATUS = 9, 8, 9, 7
_BR_R, _BR_X, _BR_B = 2, 3, 4
_BS = 5
_FLOWS = ((13, 15), (14, 16))  # (PF, PT), (QF, QT) of a solved case


def _charging_of_taps_to_shunts(bus: np.ndarray, branch: np.ndarray, base_mva: float) -> None:
    """A tapped (or phase-shifting) branch's charging moved, in place, to its buses' shunts."""
    tapped = ((branch[:, _TAP] != 1.0) | (branch[:, _SHIFT] != 0)) & (branch[:, _BR_B] != 0)
    if not tapped.any():
        return
    row = {int(b): k for k, b in enumerate(bus[:, 0])}
    on = branch[:, 10] > 0  # BR_STATUS: an open branch charges nothing
    for br in branch[tapped & on]:
        half = br[_BR_B] / 2 * base_mva  # Mvar at 1 pu
        bus[row[int(br[0])], _BS] += half / br[_TAP] ** 2
        bus[row[int(br[1])], _BS] += half
    branch[tapped, _BR_B] = 0.0


def _reverse_low_side_taps(bus: np.ndarray, branch: np.ndarray) -> None:
    """Turn round, in place, the tapped branches whose from bus is the lower-voltage side."""
    kv = dict(zip(bus[:, 0].astype(int), bus[:, _BASE_KV], strict=True))
    f_kv = np.array([kv[int(b)] for b in branch[:, 0]])
    t_kv = np.array([kv[int(b)] for b in branch[:, 1]])
    turn = (branch[:, _TAP] != 1.0) & (f_kv < t_kv)
    if not turn.any():
        return
    t = branch[turn, _TAP]
    branch[turn, 0], branch[turn, 1] = branch[turn, 1].copy(), branch[turn, 0].copy()
    branch[turn, _BR_R] *= t**2
    branch[turn, _BR_X] *= t**2
    branch[turn, _BR_B] /= t**2
    branch[turn, _TAP] = 1.0 / t
    branch[turn, _SHIFT] = -branch[turn, _SHIFT]  # the ratio t e^(j shift) seen from the other end
    for a, b in _FLOWS:
        if branch.shape[1] > b:
            branch[turn, a], branch[turn, b] = branch[turn, b].copy(), branch[turn, a].copy()
