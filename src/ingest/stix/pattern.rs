//! The STIX 2.1 patterning language (FORMATS.md §3.5.1): a hand-written lexer and
//! recursive-descent parser for the whole OASIS grammar (`STIXPattern.g4`).
//!
//! [`parse`] turns a pattern into a [`Pattern`] or a [`PatternError`] naming the line and column
//! of the first problem. It accepts everything the grammar accepts — `AND`, `OR` and
//! `FOLLOWEDBY` between observations, the `WITHIN`, `REPEATS` and `START … STOP` qualifiers,
//! every comparison operator and every literal — because what cwn can *match* is decided
//! afterwards by [`super::compile`]: a pattern cwn cannot arm is still a valid pattern and must
//! be reported as unsupported, not as malformed. This module knows nothing about indicators.
//!
//! Main types:
//! - [`Pattern`], whose root is an [`ObservationExpr`]; each bracketed observation holds a
//!   [`ComparisonExpr`] of [`Comparison`]s;
//! - [`ObjectPath`], [`Literal`] (timestamps as [`TimeLiteral`]), [`Qualifier`], [`Operator`];
//! - [`PatternError`] with its [`ErrorCode`].
//!
//! Grammar facts kept exactly: keywords are upper case only (`within` is an identifier, hence a
//! syntax error where a keyword is due); `true`/`false` are lower case; precedence is
//! `AND` > `OR` > `FOLLOWEDBY`, all left-associative; qualifiers bind tighter than all three;
//! inside a string the only escapes are `\'` and `\\`; property names may not contain `-`
//! unless quoted; `/* … */` and `// …` comments are skipped. Beyond the grammar, as the STIX
//! text requires: timestamp fields must lie in their ranges (a day its month lacks is valid
//! and matches nothing, [`TimeLiteral`]), `WITHIN` and `REPEATS` counts
//! must be positive, the same qualifier may not be applied twice directly to one `[…]`
//! observation (a parenthesised expression may carry it again, as the OASIS validator reads it),
//! and integers must lie within ±(2⁵³−1) (the STIX integer type).
//!
//! Limits: a pattern longer than [`MAX_PATTERN_LEN`] bytes or nested deeper than [`MAX_DEPTH`]
//! brackets and parentheses is refused with [`ErrorCode::TooComplex`], so no input can exhaust
//! the stack.
//!
//! ```
//! use cwn::ingest::stix::pattern::{parse, ErrorCode, ObservationExpr};
//!
//! let p = parse("[ipv4-addr:value = '198.51.100.23']").unwrap();
//! assert!(matches!(p.root, ObservationExpr::Observation(_)));
//! assert_eq!(p.to_string(), "[ipv4-addr:value = '198.51.100.23']");
//!
//! let e = parse("[file:size = ]").unwrap_err();
//! assert_eq!((e.code, e.line, e.column), (ErrorCode::Syntax, 1, 14));
//! ```

use std::fmt;

use jiff::Timestamp;

/// Longest pattern accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 64 * 1024;
/// Deepest nesting of `[`, `(` accepted.
pub const MAX_DEPTH: usize = 64;
/// Largest integer magnitude: the STIX integer type is limited to ±(2⁵³−1).
pub const MAX_INT: i64 = (1 << 53) - 1;

/// What kind of problem a [`PatternError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `E_SYNTAX`: the text violates the grammar.
    Syntax,
    /// `E_BAD_ESCAPE`: a backslash sequence other than `\'` and `\\` inside a string.
    BadEscape,
    /// `E_TOO_COMPLEX`: longer than [`MAX_PATTERN_LEN`] or nested deeper than [`MAX_DEPTH`].
    TooComplex,
}

impl ErrorCode {
    /// The code as reports write it (`E_SYNTAX`).
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Syntax => "E_SYNTAX",
            ErrorCode::BadEscape => "E_BAD_ESCAPE",
            ErrorCode::TooComplex => "E_TOO_COMPLEX",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a pattern did not parse, and where: 1-based line and column (in characters) of the
/// first offending character or token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code} at line {line} column {column}: {message}")]
pub struct PatternError {
    /// Line of the problem, from 1.
    pub line: u32,
    /// Column of the problem in characters, from 1.
    pub column: u32,
    /// What kind of problem it is.
    pub code: ErrorCode,
    /// What is wrong, for the feed owner.
    pub message: String,
}

/// A place in the pattern text: 1-based line and column (in characters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Position {
    /// Line, from 1.
    pub line: u32,
    /// Column in characters, from 1.
    pub column: u32,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} column {}", self.line, self.column)
    }
}

/// A parsed STIX pattern. Its `Display` is a canonical text that parses back to the same tree.
#[derive(Clone, Debug, PartialEq)]
pub struct Pattern {
    /// The whole pattern.
    pub root: ObservationExpr,
}

/// How observation expressions are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObservationOp {
    /// `AND`: every operand matches some observation.
    And,
    /// `OR`: one operand matches.
    Or,
    /// `FOLLOWEDBY`: the operands match observations in this order in time.
    FollowedBy,
}

impl ObservationOp {
    /// The keyword.
    pub const fn as_str(self) -> &'static str {
        match self {
            ObservationOp::And => "AND",
            ObservationOp::Or => "OR",
            ObservationOp::FollowedBy => "FOLLOWEDBY",
        }
    }

    const fn precedence(self) -> u8 {
        match self {
            ObservationOp::FollowedBy => 0,
            ObservationOp::Or => 1,
            ObservationOp::And => 2,
        }
    }
}

impl fmt::Display for ObservationOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An observation expression: what one or more observations must show.
#[derive(Clone, Debug, PartialEq)]
pub enum ObservationExpr {
    /// `[ … ]`: one observation satisfying the comparison expression.
    Observation(ComparisonExpr),
    /// Two or more expressions joined by the same operator, in source order (`a OR b OR c`).
    Combined {
        /// The operator.
        op: ObservationOp,
        /// The operands, at least two.
        operands: Vec<ObservationExpr>,
        /// Where the first operator keyword is.
        position: Position,
    },
    /// An expression with a qualifier applied.
    Qualified {
        /// The qualified expression.
        expr: Box<ObservationExpr>,
        /// The qualifier.
        qualifier: Qualifier,
        /// Where the qualifier keyword is.
        position: Position,
    },
}

/// A qualifier on an observation expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Qualifier {
    /// `WITHIN n SECONDS`: all matching observations fall within this many seconds.
    Within {
        /// The window, positive.
        seconds: f64,
    },
    /// `REPEATS n TIMES`: the expression matches this many times.
    Repeats {
        /// The count, positive.
        times: i64,
    },
    /// `START t'…' STOP t'…'`: matching observations fall in this interval.
    StartStop {
        /// First instant.
        start: TimeLiteral,
        /// Last instant.
        stop: TimeLiteral,
    },
}

impl Qualifier {
    /// The qualifier's leading keyword (`WITHIN`, `REPEATS`, `START`).
    pub const fn keyword(&self) -> &'static str {
        match self {
            Qualifier::Within { .. } => "WITHIN",
            Qualifier::Repeats { .. } => "REPEATS",
            Qualifier::StartStop { .. } => "START",
        }
    }
}

/// A boolean combination of comparisons, all evaluated against one observation.
#[derive(Clone, Debug, PartialEq)]
pub enum ComparisonExpr {
    /// One comparison.
    Test(Comparison),
    /// Every operand holds (two or more).
    And(Vec<ComparisonExpr>),
    /// One operand holds (two or more).
    Or(Vec<ComparisonExpr>),
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `=` or `==`.
    Equal,
    /// `!=` or `<>`.
    NotEqual,
    /// `>`.
    Greater,
    /// `<`.
    Less,
    /// `>=`.
    GreaterOrEqual,
    /// `<=`.
    LessOrEqual,
    /// `IN (…)`.
    In,
    /// `LIKE '…'` (SQL wildcards).
    Like,
    /// `MATCHES '…'` (PCRE).
    Matches,
    /// `ISSUBSET '…'`: the address or network lies inside the given network.
    IsSubset,
    /// `ISSUPERSET '…'`: the network contains the given address or network.
    IsSuperset,
    /// `EXISTS path`.
    Exists,
}

impl Operator {
    /// The operator as written canonically.
    pub const fn as_str(self) -> &'static str {
        match self {
            Operator::Equal => "=",
            Operator::NotEqual => "!=",
            Operator::Greater => ">",
            Operator::Less => "<",
            Operator::GreaterOrEqual => ">=",
            Operator::LessOrEqual => "<=",
            Operator::In => "IN",
            Operator::Like => "LIKE",
            Operator::Matches => "MATCHES",
            Operator::IsSubset => "ISSUBSET",
            Operator::IsSuperset => "ISSUPERSET",
            Operator::Exists => "EXISTS",
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The right-hand side of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// One literal.
    Literal(Literal),
    /// The set of an `IN` (possibly empty).
    Set(Vec<Literal>),
    /// Nothing: `EXISTS` has no right-hand side.
    Absent,
}

/// One comparison: `path [NOT] op value`, or `EXISTS path`.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The property compared.
    pub path: ObjectPath,
    /// `NOT` before the operator.
    pub negated: bool,
    /// The operator.
    pub operator: Operator,
    /// The right-hand side.
    pub operand: Operand,
    /// Where the comparison starts.
    pub position: Position,
}

/// One step of an object path after the object type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PathStep {
    /// A property name or dictionary key (`.value`, `.'SHA-256'`).
    Key(String),
    /// A list index (`[0]`, `[-1]`).
    Index(i64),
    /// Any list element (`[*]`).
    AnyIndex,
}

/// An object path: `object-type:property` with further steps.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectPath {
    /// The object type (`ipv4-addr`, `file`, `x-usb-device`).
    pub object_type: String,
    /// The steps; the first is always a [`PathStep::Key`].
    pub steps: Vec<PathStep>,
}

impl ObjectPath {
    /// Whether the steps are exactly these, where `"*"` stands for [`PathStep::AnyIndex`] and
    /// every other string for a [`PathStep::Key`] with that name.
    pub fn steps_are(&self, want: &[&str]) -> bool {
        self.steps.len() == want.len()
            && self.steps.iter().zip(want).all(|(s, w)| match s {
                PathStep::Key(k) => k == w,
                PathStep::AnyIndex => *w == "*",
                PathStep::Index(_) => false,
            })
    }
}

/// A `t'…'` literal as written: UTC, month 01–12, day 01–31, hour 00–23, minute 00–59,
/// second 00–60, at most nanoseconds kept. The grammar admits day 31 in every month, so a
/// valid pattern can name a day its month lacks (`t'2023-02-29T00:00:00Z'`, the OASIS
/// validator's own example): no instant equals such a literal, and [`TimeLiteral::instant`]
/// says so instead of the parse refusing a valid pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeLiteral {
    /// Year, 0000–9999.
    pub year: u16,
    /// Month, 1–12.
    pub month: u8,
    /// Day, 1–31.
    pub day: u8,
    /// Hour, 0–23.
    pub hour: u8,
    /// Minute, 0–59.
    pub minute: u8,
    /// Second, 0–60 (60: a leap second).
    pub second: u8,
    /// Fraction of the second in nanoseconds (digits past the ninth dropped).
    pub nanos: u32,
}

impl TimeLiteral {
    /// Reads `YYYY-MM-DDTHH:MM:SS[.fraction]Z` with every field in its range.
    ///
    /// # Errors
    ///
    /// A message saying what is wrong with the text.
    pub fn parse(s: &str) -> Result<TimeLiteral, String> {
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        let num = |r: std::ops::Range<usize>| {
            b[r].iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
        };
        if !s.ends_with('Z') {
            return Err(format!(
                "`{}` must be in UTC with a literal `Z` at the end",
                short(s)
            ));
        }
        let shape = b.len() >= 20
            && digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
            && b[10] == b'T'
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16)
            && b[16] == b':'
            && digits(17..19)
            && (b.len() == 20 || (b[19] == b'.' && b.len() > 21 && digits(20..b.len() - 1)));
        if !shape {
            return Err(format!(
                "`{}` is not of the form YYYY-MM-DDTHH:MM:SS[.fraction]Z",
                short(s)
            ));
        }
        let (month, day, hour, minute, second) =
            (num(5..7), num(8..10), num(11..13), num(14..16), num(17..19));
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return Err(format!("`{s}` has a field out of range"));
        }
        let nanos = if b.len() > 20 {
            let frac = &b[20..b.len() - 1];
            let kept = &frac[..frac.len().min(9)];
            let n = kept
                .iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
            n * 10u32.pow(9 - kept.len() as u32)
        } else {
            0
        };
        // Every value is range-checked above.
        #[allow(clippy::cast_possible_truncation)]
        Ok(TimeLiteral {
            year: num(0..4) as u16,
            month: month as u8,
            day: day as u8,
            hour: hour as u8,
            minute: minute as u8,
            second: second as u8,
            nanos,
        })
    }

    /// The instant this names, a leap second read as `:59`; `None` for a day its month lacks.
    pub fn instant(&self) -> Option<Timestamp> {
        let date = jiff::civil::Date::new(
            i16::try_from(self.year).ok()?,
            i8::try_from(self.month).ok()?,
            i8::try_from(self.day).ok()?,
        )
        .ok()?;
        let time = jiff::civil::Time::new(
            i8::try_from(self.hour).ok()?,
            i8::try_from(self.minute).ok()?,
            i8::try_from(self.second.min(59)).ok()?,
            i32::try_from(self.nanos).ok()?,
        )
        .ok()?;
        date.to_datetime(time)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp())
    }
}

impl fmt::Display for TimeLiteral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )?;
        if self.nanos > 0 {
            let frac = format!("{:09}", self.nanos);
            write!(f, ".{}", frac.trim_end_matches('0'))?;
        }
        f.write_str("Z")
    }
}

/// A literal value.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// `'…'`, unescaped.
    String(String),
    /// An integer within ±[`MAX_INT`].
    Int(i64),
    /// A floating-point number (`7.0`, `.5`), finite.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// `t'2016-06-01T00:00:00Z'`.
    Timestamp(TimeLiteral),
    /// `h'ffd8'`, decoded.
    Hex(Vec<u8>),
    /// `b'dGVzdA=='`, decoded.
    Binary(Vec<u8>),
}

impl Literal {
    /// A short description for messages (`a string`, `an integer`, …).
    pub const fn describe(&self) -> &'static str {
        match self {
            Literal::String(_) => "a string",
            Literal::Int(_) => "an integer",
            Literal::Float(_) => "a number",
            Literal::Bool(_) => "a boolean",
            Literal::Timestamp(_) => "a timestamp",
            Literal::Hex(_) => "a hex literal",
            Literal::Binary(_) => "a binary literal",
        }
    }
}

/// Parses a STIX pattern.
///
/// # Errors
///
/// [`ErrorCode::Syntax`] or [`ErrorCode::BadEscape`] at the first offending place;
/// [`ErrorCode::TooComplex`] for patterns over [`MAX_PATTERN_LEN`] bytes or [`MAX_DEPTH`] levels.
pub fn parse(pattern: &str) -> Result<Pattern, PatternError> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(error(
            Position { line: 1, column: 1 },
            ErrorCode::TooComplex,
            format!(
                "the pattern is {} bytes long, more than the {MAX_PATTERN_LEN} accepted",
                pattern.len()
            ),
        ));
    }
    let mut lexer = Lexer::new(pattern);
    let tok = lexer.next()?;
    let mut parser = Parser {
        lexer,
        tok,
        depth: 0,
    };
    let root = parser.followed_by()?;
    if parser.tok.tok != Tok::Eof {
        return Err(parser.unexpected(
            "AND, OR, FOLLOWEDBY, a qualifier (WITHIN, REPEATS, START) or the end of the pattern",
        ));
    }
    Ok(Pattern { root })
}

/// Parses a STIX timestamp (`2016-06-01T00:00:00Z`, fraction optional, UTC with a literal `Z`),
/// as used both in pattern literals and in the JSON properties of STIX objects. A leap second
/// (`:60`) is accepted and read as `:59`; fractions beyond nanoseconds are truncated.
///
/// # Errors
///
/// A message saying what is wrong with the text.
pub fn parse_timestamp(s: &str) -> Result<Timestamp, String> {
    TimeLiteral::parse(s)?
        .instant()
        .ok_or_else(|| format!("`{}` names a day its month does not have", short(s)))
}

fn error(pos: Position, code: ErrorCode, message: impl Into<String>) -> PatternError {
    PatternError {
        line: pos.line,
        column: pos.column,
        code,
        message: message.into(),
    }
}

fn syntax(pos: Position, message: impl Into<String>) -> PatternError {
    error(pos, ErrorCode::Syntax, message)
}

/// Cuts text for a message.
fn short(s: &str) -> String {
    const MAX: usize = 60;
    match s.char_indices().nth(MAX) {
        None => s.to_string(),
        Some((end, _)) => format!("{}…", &s[..end]),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keyword {
    And,
    Or,
    Not,
    FollowedBy,
    Like,
    Matches,
    IsSuperset,
    IsSubset,
    Exists,
    Last,
    In,
    Start,
    Stop,
    Seconds,
    Within,
    Repeats,
    Times,
}

impl Keyword {
    const ALL: [Keyword; 17] = [
        Keyword::And,
        Keyword::Or,
        Keyword::Not,
        Keyword::FollowedBy,
        Keyword::Like,
        Keyword::Matches,
        Keyword::IsSuperset,
        Keyword::IsSubset,
        Keyword::Exists,
        Keyword::Last,
        Keyword::In,
        Keyword::Start,
        Keyword::Stop,
        Keyword::Seconds,
        Keyword::Within,
        Keyword::Repeats,
        Keyword::Times,
    ];

    const fn as_str(self) -> &'static str {
        match self {
            Keyword::And => "AND",
            Keyword::Or => "OR",
            Keyword::Not => "NOT",
            Keyword::FollowedBy => "FOLLOWEDBY",
            Keyword::Like => "LIKE",
            Keyword::Matches => "MATCHES",
            Keyword::IsSuperset => "ISSUPERSET",
            Keyword::IsSubset => "ISSUBSET",
            Keyword::Exists => "EXISTS",
            Keyword::Last => "LAST",
            Keyword::In => "IN",
            Keyword::Start => "START",
            Keyword::Stop => "STOP",
            Keyword::Seconds => "SECONDS",
            Keyword::Within => "WITHIN",
            Keyword::Repeats => "REPEATS",
            Keyword::Times => "TIMES",
        }
    }

    fn from_word(word: &str) -> Option<Keyword> {
        Keyword::ALL.into_iter().find(|k| k.as_str() == word)
    }
}

/// Whether `word` is reserved by the lexer (keywords and the boolean literals), so that it can
/// only be used as a property name when quoted.
fn is_reserved(word: &str) -> bool {
    word == "true" || word == "false" || Keyword::from_word(word).is_some()
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    LBrack,
    RBrack,
    LParen,
    RParen,
    Colon,
    Dot,
    Comma,
    Star,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Keyword(Keyword),
    Ident { name: String, hyphen: bool },
    Literal(Literal),
    Eof,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    pos: Position,
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::LBrack => "`[`".into(),
        Tok::RBrack => "`]`".into(),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::Colon => "`:`".into(),
        Tok::Dot => "`.`".into(),
        Tok::Comma => "`,`".into(),
        Tok::Star => "`*`".into(),
        Tok::Eq => "`=`".into(),
        Tok::Ne => "`!=`".into(),
        Tok::Lt => "`<`".into(),
        Tok::Le => "`<=`".into(),
        Tok::Gt => "`>`".into(),
        Tok::Ge => "`>=`".into(),
        Tok::Keyword(k) => format!("`{}`", k.as_str()),
        Tok::Ident { name, .. } => {
            let upper = name.to_ascii_uppercase();
            match Keyword::from_word(&upper) {
                Some(k) if upper != *name => format!(
                    "identifier `{name}` (keywords are upper case: `{}`)",
                    k.as_str()
                ),
                _ => format!("identifier `{}`", short(name)),
            }
        }
        Tok::Literal(Literal::String(s)) => format!("string '{}'", short(s)),
        Tok::Literal(Literal::Int(n)) => format!("integer {n}"),
        Tok::Literal(Literal::Float(f)) => format!("number {}", float_text(*f)),
        Tok::Literal(Literal::Bool(b)) => format!("`{b}`"),
        Tok::Literal(l) => l.describe().to_string(),
        Tok::Eof => "the end of the pattern".into(),
    }
}

fn is_space(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t'
            | '\r'
            | '\n'
            | '\u{0B}'
            | '\u{0C}'
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'
            ..='\u{200A}' | '\u{2028}' | '\u{2029}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

struct Lexer<'a> {
    src: &'a str,
    at: usize,
    line: u32,
    column: u32,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer {
            src,
            at: 0,
            line: 1,
            column: 1,
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.at..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut it = self.src[self.at..].chars();
        it.next();
        it.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn here(&self) -> Position {
        Position {
            line: self.line,
            column: self.column,
        }
    }

    fn skip_trivia(&mut self) -> Result<(), PatternError> {
        loop {
            match (self.peek(), self.peek2()) {
                (Some(c), _) if is_space(c) => {
                    self.bump();
                }
                (Some('/'), Some('*')) => {
                    let start = self.here();
                    self.bump();
                    self.bump();
                    loop {
                        match self.bump() {
                            None => return Err(syntax(start, "unterminated `/*` comment")),
                            Some('*') if self.peek() == Some('/') => {
                                self.bump();
                                break;
                            }
                            Some(_) => {}
                        }
                    }
                }
                (Some('/'), Some('/')) => {
                    while self.peek().is_some_and(|c| c != '\n' && c != '\r') {
                        self.bump();
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn next(&mut self) -> Result<Token, PatternError> {
        self.skip_trivia()?;
        let pos = self.here();
        let Some(c) = self.peek() else {
            return Ok(Token { tok: Tok::Eof, pos });
        };
        let simple = |lexer: &mut Self, tok: Tok| {
            lexer.bump();
            tok
        };
        let tok = match c {
            '[' => simple(self, Tok::LBrack),
            ']' => simple(self, Tok::RBrack),
            '(' => simple(self, Tok::LParen),
            ')' => simple(self, Tok::RParen),
            ':' => simple(self, Tok::Colon),
            ',' => simple(self, Tok::Comma),
            '*' => simple(self, Tok::Star),
            '=' => {
                self.bump();
                if self.peek() == Some('=') {
                    self.bump();
                }
                Tok::Eq
            }
            '!' => {
                self.bump();
                if self.peek() != Some('=') {
                    return Err(syntax(pos, "`!` must be followed by `=` (`!=`)"));
                }
                self.bump();
                Tok::Ne
            }
            '<' => {
                self.bump();
                match self.peek() {
                    Some('=') => simple(self, Tok::Le),
                    Some('>') => simple(self, Tok::Ne),
                    _ => Tok::Lt,
                }
            }
            '>' => {
                self.bump();
                if self.peek() == Some('=') {
                    simple(self, Tok::Ge)
                } else {
                    Tok::Gt
                }
            }
            '\'' => Tok::Literal(Literal::String(self.string(pos)?)),
            '.' if self.peek2().is_some_and(|d| d.is_ascii_digit()) => self.number(pos)?,
            '.' => simple(self, Tok::Dot),
            '+' | '-' | '0'..='9' => self.number(pos)?,
            c if c.is_ascii_alphabetic() || c == '_' => self.word(pos)?,
            c => {
                return Err(syntax(
                    pos,
                    format!("unexpected character `{}`", c.escape_default()),
                ));
            }
        };
        Ok(Token { tok, pos })
    }

    fn string(&mut self, start: Position) -> Result<String, PatternError> {
        self.bump();
        let mut out = String::new();
        loop {
            let here = self.here();
            match self.bump() {
                None => {
                    return Err(syntax(
                        start,
                        "unterminated string: no closing `'` (a quote inside a string is written \\')",
                    ));
                }
                Some('\'') => return Ok(out),
                Some('\\') => match self.peek() {
                    Some(c @ ('\'' | '\\')) => {
                        self.bump();
                        out.push(c);
                    }
                    Some(c) => {
                        return Err(error(
                            here,
                            ErrorCode::BadEscape,
                            format!(
                                "`\\{}` is not an escape; inside '…' only \\' and \\\\ are (write a backslash as \\\\)",
                                c.escape_default()
                            ),
                        ));
                    }
                    None => {
                        return Err(syntax(start, "unterminated string: no closing `'`"));
                    }
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn number(&mut self, pos: Position) -> Result<Tok, PatternError> {
        let start = self.at;
        let negative = match self.peek() {
            Some('-') => {
                self.bump();
                true
            }
            Some('+') => {
                self.bump();
                false
            }
            _ => false,
        };
        let int_start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        let int_end = self.at;
        let float = self.peek() == Some('.') && self.peek2().is_some_and(|c| c.is_ascii_digit());
        if float {
            self.bump();
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
        }
        let text = &self.src[start..self.at];
        // Only a keyword (`5 SECONDS` may be written `5SECONDS`) may follow a number directly;
        // anything else is an unquoted value such as a hash.
        if self
            .peek()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        {
            let rest = &self.src[self.at..];
            let word_len = rest.find(|c| !is_word_char(c)).unwrap_or(rest.len());
            if Keyword::from_word(&rest[..word_len]).is_none() {
                let end = self.at
                    + rest
                        .find(|c: char| !(is_word_char(c) || c == '.' || c == ':'))
                        .unwrap_or(rest.len());
                return Err(syntax(
                    pos,
                    format!(
                        "`{}` is not a number; string values are quoted: '…'",
                        short(&self.src[start..end])
                    ),
                ));
            }
        }
        let digits = &self.src[int_start..int_end];
        if float {
            let v: f64 = text
                .parse()
                .map_err(|_| syntax(pos, format!("`{}` is not a number", short(text))))?;
            if !v.is_finite() {
                return Err(syntax(
                    pos,
                    format!("number `{}` is out of range", short(text)),
                ));
            }
            return Ok(Tok::Literal(Literal::Float(v)));
        }
        if digits.is_empty() {
            return Err(syntax(pos, "`+` and `-` must be followed by a number"));
        }
        if digits.len() > 1 && digits.starts_with('0') {
            return Err(syntax(
                pos,
                format!("integer `{}` has a leading zero", short(text)),
            ));
        }
        let magnitude = if digits.len() > 16 {
            None
        } else {
            digits.parse::<i64>().ok().filter(|v| *v <= MAX_INT)
        };
        let Some(magnitude) = magnitude else {
            return Err(syntax(
                pos,
                format!(
                    "integer `{}` is out of range (STIX integers lie within ±{MAX_INT})",
                    short(text)
                ),
            ));
        };
        Ok(Tok::Literal(Literal::Int(if negative {
            -magnitude
        } else {
            magnitude
        })))
    }

    fn word(&mut self, pos: Position) -> Result<Tok, PatternError> {
        let start = self.at;
        while self.peek().is_some_and(is_word_char) {
            self.bump();
        }
        let text = &self.src[start..self.at];
        if matches!(text, "t" | "h" | "b") && self.peek() == Some('\'') {
            return self.prefixed(text, pos);
        }
        Ok(match text {
            "true" => Tok::Literal(Literal::Bool(true)),
            "false" => Tok::Literal(Literal::Bool(false)),
            _ => match Keyword::from_word(text) {
                Some(k) => Tok::Keyword(k),
                None => Tok::Ident {
                    name: text.to_string(),
                    hyphen: text.contains('-'),
                },
            },
        })
    }

    /// `t'…'`, `h'…'`, `b'…'`: the content has no escapes and ends at the next quote.
    fn prefixed(&mut self, prefix: &str, pos: Position) -> Result<Tok, PatternError> {
        self.bump();
        let content_start = self.at;
        loop {
            match self.bump() {
                None => {
                    return Err(syntax(
                        pos,
                        format!("unterminated {prefix}'…' literal: no closing `'`"),
                    ));
                }
                Some('\'') => break,
                Some(_) => {}
            }
        }
        let content = &self.src[content_start..self.at - 1];
        let lit = match prefix {
            "t" => Literal::Timestamp(
                TimeLiteral::parse(content).map_err(|m| syntax(pos, format!("timestamp: {m}")))?,
            ),
            "h" => Literal::Hex(decode_hex(content).ok_or_else(|| {
                syntax(
                    pos,
                    format!("h'{}' must hold pairs of hex digits", short(content)),
                )
            })?),
            _ => Literal::Binary(decode_base64(content).ok_or_else(|| {
                syntax(
                    pos,
                    format!("b'{}' must hold non-empty, padded base64", short(content)),
                )
            })?),
        };
        Ok(Tok::Literal(lit))
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.is_empty() || !b.len().is_multiple_of(4) {
        return None;
    }
    let pad = b.iter().rev().take_while(|&&c| c == b'=').count();
    if pad > 2 {
        return None;
    }
    let body = &b[..b.len() - pad];
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in body {
        let v = BASE64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Standard padded base64 of `bytes` (also HTTP basic authentication in `cwn sync`).
pub(crate) fn encode_base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    tok: Token,
    depth: usize,
}

impl Parser<'_> {
    /// Moves to the next token, returning the current one.
    fn bump(&mut self) -> Result<Token, PatternError> {
        let next = self.lexer.next()?;
        Ok(std::mem::replace(&mut self.tok, next))
    }

    fn at_keyword(&self, k: Keyword) -> bool {
        self.tok.tok == Tok::Keyword(k)
    }

    fn unexpected(&self, expected: &str) -> PatternError {
        syntax(
            self.tok.pos,
            format!("expected {expected}, found {}", describe(&self.tok.tok)),
        )
    }

    fn expect(&mut self, tok: Tok, expected: &str) -> Result<(), PatternError> {
        if self.tok.tok == tok {
            self.bump()?;
            Ok(())
        } else {
            Err(self.unexpected(expected))
        }
    }

    fn enter(&mut self) -> Result<(), PatternError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(error(
                self.tok.pos,
                ErrorCode::TooComplex,
                format!("brackets and parentheses are nested more than {MAX_DEPTH} deep"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn chain(
        &mut self,
        keyword: Keyword,
        op: ObservationOp,
        next: fn(&mut Self) -> Result<ObservationExpr, PatternError>,
    ) -> Result<ObservationExpr, PatternError> {
        let first = next(self)?;
        if !self.at_keyword(keyword) {
            return Ok(first);
        }
        let position = self.tok.pos;
        let mut operands = vec![first];
        while self.at_keyword(keyword) {
            self.bump()?;
            operands.push(next(self)?);
        }
        Ok(ObservationExpr::Combined {
            op,
            operands,
            position,
        })
    }

    fn followed_by(&mut self) -> Result<ObservationExpr, PatternError> {
        self.chain(Keyword::FollowedBy, ObservationOp::FollowedBy, Self::obs_or)
    }

    fn obs_or(&mut self) -> Result<ObservationExpr, PatternError> {
        self.chain(Keyword::Or, ObservationOp::Or, Self::obs_and)
    }

    fn obs_and(&mut self) -> Result<ObservationExpr, PatternError> {
        self.chain(Keyword::And, ObservationOp::And, Self::qualified)
    }

    fn qualified(&mut self) -> Result<ObservationExpr, PatternError> {
        // As the OASIS validator reads the text: a qualifier kind may be applied only once
        // to a bracketed `[…]` observation, any number of times to a parenthesised
        // expression (`([a:b = 1]) WITHIN 5 SECONDS WITHIN 6 SECONDS` is valid).
        let bracketed = self.tok.tok == Tok::LBrack;
        let mut expr = self.observation()?;
        // Which qualifier kinds are applied directly to the bracketed observation.
        let mut applied: Vec<&'static str> = Vec::new();
        loop {
            let position = self.tok.pos;
            let qualifier = match &self.tok.tok {
                Tok::Keyword(Keyword::Within) => {
                    self.bump()?;
                    let seconds = match self.tok.tok {
                        Tok::Literal(Literal::Int(n)) if n > 0 => n as f64,
                        Tok::Literal(Literal::Float(f)) if f > 0.0 => f,
                        _ => {
                            return Err(
                                self.unexpected("a positive number of seconds after WITHIN")
                            );
                        }
                    };
                    self.bump()?;
                    self.expect(Tok::Keyword(Keyword::Seconds), "SECONDS")?;
                    Qualifier::Within { seconds }
                }
                Tok::Keyword(Keyword::Repeats) => {
                    self.bump()?;
                    let times = match self.tok.tok {
                        Tok::Literal(Literal::Int(n)) if n > 0 => n,
                        _ => return Err(self.unexpected("a positive integer after REPEATS")),
                    };
                    self.bump()?;
                    self.expect(Tok::Keyword(Keyword::Times), "TIMES")?;
                    Qualifier::Repeats { times }
                }
                Tok::Keyword(Keyword::Start) => {
                    self.bump()?;
                    let start = self.timestamp("a timestamp t'…Z' after START")?;
                    self.expect(Tok::Keyword(Keyword::Stop), "STOP")?;
                    let stop = self.timestamp("a timestamp t'…Z' after STOP")?;
                    Qualifier::StartStop { start, stop }
                }
                _ => return Ok(expr),
            };
            let keyword = qualifier.keyword();
            if bracketed && applied.contains(&keyword) {
                return Err(syntax(
                    position,
                    format!("{keyword} is applied twice to the same observation expression"),
                ));
            }
            applied.push(keyword);
            expr = ObservationExpr::Qualified {
                expr: Box::new(expr),
                qualifier,
                position,
            };
        }
    }

    fn timestamp(&mut self, expected: &str) -> Result<TimeLiteral, PatternError> {
        match self.tok.tok {
            Tok::Literal(Literal::Timestamp(t)) => {
                self.bump()?;
                Ok(t)
            }
            _ => Err(self.unexpected(expected)),
        }
    }

    fn observation(&mut self) -> Result<ObservationExpr, PatternError> {
        let open = self.tok.pos;
        match self.tok.tok {
            Tok::LBrack => {
                self.enter()?;
                self.bump()?;
                let cmp = self.cmp_or()?;
                self.expect(
                    Tok::RBrack,
                    &format!("AND, OR or `]` to close the `[` at {open}"),
                )?;
                self.leave();
                Ok(ObservationExpr::Observation(cmp))
            }
            Tok::LParen => {
                self.enter()?;
                self.bump()?;
                let expr = self.followed_by()?;
                self.expect(
                    Tok::RParen,
                    &format!("AND, OR, FOLLOWEDBY, a qualifier or `)` to close the `(` at {open}"),
                )?;
                self.leave();
                Ok(expr)
            }
            _ => Err(self.unexpected("`[` or `(` to start an observation expression")),
        }
    }

    fn cmp_or(&mut self) -> Result<ComparisonExpr, PatternError> {
        let first = self.cmp_and()?;
        if !self.at_keyword(Keyword::Or) {
            return Ok(first);
        }
        let mut operands = vec![first];
        while self.at_keyword(Keyword::Or) {
            self.bump()?;
            operands.push(self.cmp_and()?);
        }
        Ok(ComparisonExpr::Or(operands))
    }

    fn cmp_and(&mut self) -> Result<ComparisonExpr, PatternError> {
        let first = self.test()?;
        if !self.at_keyword(Keyword::And) {
            return Ok(first);
        }
        let mut operands = vec![first];
        while self.at_keyword(Keyword::And) {
            self.bump()?;
            operands.push(self.test()?);
        }
        Ok(ComparisonExpr::And(operands))
    }

    fn test(&mut self) -> Result<ComparisonExpr, PatternError> {
        let position = self.tok.pos;
        match &self.tok.tok {
            Tok::LParen => {
                self.enter()?;
                self.bump()?;
                let inner = self.cmp_or()?;
                self.expect(
                    Tok::RParen,
                    &format!("AND, OR or `)` to close the `(` at {position}"),
                )?;
                self.leave();
                Ok(inner)
            }
            Tok::Keyword(Keyword::Exists) => {
                self.bump()?;
                let path = self.object_path()?;
                Ok(ComparisonExpr::Test(Comparison {
                    path,
                    negated: false,
                    operator: Operator::Exists,
                    operand: Operand::Absent,
                    position,
                }))
            }
            Tok::Keyword(Keyword::Not) => Err(syntax(
                position,
                "NOT goes between the object path and the operator (`path NOT IN (…)`)",
            )),
            Tok::Ident { .. } => {
                let path = self.object_path()?;
                let negated = self.at_keyword(Keyword::Not);
                if negated {
                    self.bump()?;
                }
                let operator = match self.tok.tok {
                    Tok::Eq => Operator::Equal,
                    Tok::Ne => Operator::NotEqual,
                    Tok::Gt => Operator::Greater,
                    Tok::Lt => Operator::Less,
                    Tok::Ge => Operator::GreaterOrEqual,
                    Tok::Le => Operator::LessOrEqual,
                    Tok::Keyword(Keyword::In) => Operator::In,
                    Tok::Keyword(Keyword::Like) => Operator::Like,
                    Tok::Keyword(Keyword::Matches) => Operator::Matches,
                    Tok::Keyword(Keyword::IsSubset) => Operator::IsSubset,
                    Tok::Keyword(Keyword::IsSuperset) => Operator::IsSuperset,
                    _ => {
                        return Err(self.unexpected(
                            "a comparison operator (=, !=, <, >, <=, >=, IN, LIKE, MATCHES, ISSUBSET, ISSUPERSET)",
                        ));
                    }
                };
                self.bump()?;
                let operand = match operator {
                    Operator::Equal | Operator::NotEqual => Operand::Literal(
                        self.literal(true, &format!("a value after `{operator}`"))?,
                    ),
                    Operator::Greater
                    | Operator::Less
                    | Operator::GreaterOrEqual
                    | Operator::LessOrEqual => Operand::Literal(
                        self.literal(false, &format!("an orderable value after `{operator}`"))?,
                    ),
                    Operator::In => Operand::Set(self.set()?),
                    _ => Operand::Literal(self.string_literal(operator)?),
                };
                Ok(ComparisonExpr::Test(Comparison {
                    path,
                    negated,
                    operator,
                    operand,
                    position,
                }))
            }
            _ => Err(self.unexpected("an object path (`type:property`), `(` or EXISTS")),
        }
    }

    fn literal(&mut self, allow_bool: bool, expected: &str) -> Result<Literal, PatternError> {
        match &self.tok.tok {
            Tok::Literal(Literal::Bool(_)) if !allow_bool => Err(syntax(
                self.tok.pos,
                format!("expected {expected}, found a boolean, which has no order"),
            )),
            Tok::Literal(l) => {
                let l = l.clone();
                self.bump()?;
                Ok(l)
            }
            Tok::Ident { name, .. } => Err(syntax(
                self.tok.pos,
                format!(
                    "expected {expected}, found identifier `{}`; string values are quoted: '{}'",
                    short(name),
                    short(name)
                ),
            )),
            _ => Err(self.unexpected(expected)),
        }
    }

    fn string_literal(&mut self, operator: Operator) -> Result<Literal, PatternError> {
        match &self.tok.tok {
            Tok::Literal(Literal::String(_)) => self.literal(false, ""),
            _ => Err(self.unexpected(&format!("a string '…' after {operator}"))),
        }
    }

    fn set(&mut self) -> Result<Vec<Literal>, PatternError> {
        self.expect(Tok::LParen, "`(` to open the set after IN")?;
        let mut items = Vec::new();
        if self.tok.tok == Tok::RParen {
            self.bump()?;
            return Ok(items);
        }
        loop {
            items.push(self.literal(true, "a value in the set")?);
            match self.tok.tok {
                Tok::Comma => {
                    self.bump()?;
                }
                Tok::RParen => {
                    self.bump()?;
                    return Ok(items);
                }
                _ => return Err(self.unexpected("`,` or `)` in the set")),
            }
        }
    }

    fn key(&mut self, expected: &str) -> Result<String, PatternError> {
        let pos = self.tok.pos;
        let key = match &self.tok.tok {
            Tok::Ident {
                name,
                hyphen: false,
            } => name.clone(),
            Tok::Ident { name, hyphen: true } => {
                return Err(syntax(
                    pos,
                    format!(
                        "property name `{}` contains `-`; quote it: '{}'",
                        short(name),
                        short(name)
                    ),
                ));
            }
            Tok::Literal(Literal::String(s)) => s.clone(),
            Tok::Keyword(k) => {
                return Err(syntax(
                    pos,
                    format!(
                        "`{0}` is a keyword; quote it to use it as a property name: '{0}'",
                        k.as_str()
                    ),
                ));
            }
            Tok::Literal(Literal::Bool(b)) => {
                return Err(syntax(
                    pos,
                    format!("`{b}` is a literal; quote it to use it as a property name: '{b}'"),
                ));
            }
            _ => return Err(self.unexpected(expected)),
        };
        self.bump()?;
        Ok(key)
    }

    fn object_path(&mut self) -> Result<ObjectPath, PatternError> {
        let object_type = match &self.tok.tok {
            Tok::Ident { name, .. } => name.clone(),
            Tok::Keyword(k) => {
                return Err(syntax(
                    self.tok.pos,
                    format!("`{}` is a keyword, not an object type", k.as_str()),
                ));
            }
            _ => return Err(self.unexpected("an object type such as `file`")),
        };
        self.bump()?;
        self.expect(Tok::Colon, "`:` after the object type")?;
        let mut steps = vec![PathStep::Key(self.key("a property name after `:`")?)];
        loop {
            match self.tok.tok {
                Tok::Dot => {
                    self.bump()?;
                    steps.push(PathStep::Key(self.key("a property name after `.`")?));
                }
                Tok::LBrack => {
                    self.bump()?;
                    let step = match self.tok.tok {
                        Tok::Literal(Literal::Int(n)) => PathStep::Index(n),
                        Tok::Star => PathStep::AnyIndex,
                        _ => return Err(self.unexpected("a list index or `*`")),
                    };
                    self.bump()?;
                    self.expect(Tok::RBrack, "`]` after the list index")?;
                    steps.push(step);
                }
                _ => return Ok(ObjectPath { object_type, steps }),
            }
        }
    }
}

// ---- canonical text ----

fn float_text(f: f64) -> String {
    let s = f.to_string();
    if s.contains('.') { s } else { format!("{s}.0") }
}

fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("'")?;
    for c in s.chars() {
        match c {
            '\'' => f.write_str("\\'")?,
            '\\' => f.write_str("\\\\")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("'")
}

fn is_plain_key(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !is_reserved(s)
}

fn write_key(f: &mut fmt::Formatter<'_>, key: &str) -> fmt::Result {
    if is_plain_key(key) {
        f.write_str(key)
    } else {
        write_quoted(f, key)
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::String(s) => write_quoted(f, s),
            Literal::Int(n) => write!(f, "{n}"),
            Literal::Float(x) => f.write_str(&float_text(*x)),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Timestamp(t) => write!(f, "t'{t}'"),
            Literal::Hex(bytes) => {
                f.write_str("h'")?;
                for b in bytes {
                    write!(f, "{b:02x}")?;
                }
                f.write_str("'")
            }
            Literal::Binary(bytes) => write!(f, "b'{}'", encode_base64(bytes)),
        }
    }
}

impl fmt::Display for ObjectPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.object_type)?;
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                PathStep::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    write_key(f, k)?;
                }
                PathStep::Index(n) => write!(f, "[{n}]")?,
                PathStep::AnyIndex => f.write_str("[*]")?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::Exists {
            return write!(f, "EXISTS {}", self.path);
        }
        write!(f, "{} ", self.path)?;
        if self.negated {
            f.write_str("NOT ")?;
        }
        write!(f, "{} ", self.operator)?;
        match &self.operand {
            Operand::Literal(l) => write!(f, "{l}"),
            Operand::Set(items) => {
                f.write_str("(")?;
                for (i, l) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{l}")?;
                }
                f.write_str(")")
            }
            Operand::Absent => Ok(()),
        }
    }
}

impl fmt::Display for ComparisonExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComparisonExpr::Test(c) => write!(f, "{c}"),
            ComparisonExpr::And(xs) | ComparisonExpr::Or(xs) => {
                let and = matches!(self, ComparisonExpr::And(_));
                for (i, x) in xs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(if and { " AND " } else { " OR " })?;
                    }
                    // Parentheses wherever the source must have had them.
                    let paren = match x {
                        ComparisonExpr::Test(_) => false,
                        ComparisonExpr::And(_) => and,
                        ComparisonExpr::Or(_) => true,
                    };
                    if paren {
                        write!(f, "({x})")?;
                    } else {
                        write!(f, "{x}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Qualifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Qualifier::Within { seconds } => {
                if seconds.fract() == 0.0 && *seconds <= MAX_INT as f64 {
                    write!(f, "WITHIN {} SECONDS", *seconds as i64)
                } else {
                    write!(f, "WITHIN {} SECONDS", float_text(*seconds))
                }
            }
            Qualifier::Repeats { times } => write!(f, "REPEATS {times} TIMES"),
            Qualifier::StartStop { start, stop } => write!(f, "START t'{start}' STOP t'{stop}'"),
        }
    }
}

/// Whether `expr` already carries a qualifier with this keyword directly (so that printing
/// another one after it needs parentheses to parse back).
fn directly_qualified(expr: &ObservationExpr, keyword: &str) -> bool {
    match expr {
        ObservationExpr::Qualified {
            expr, qualifier, ..
        } => qualifier.keyword() == keyword || directly_qualified(expr, keyword),
        _ => false,
    }
}

impl fmt::Display for ObservationExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObservationExpr::Observation(c) => write!(f, "[{c}]"),
            ObservationExpr::Combined { op, operands, .. } => {
                for (i, x) in operands.iter().enumerate() {
                    if i > 0 {
                        write!(f, " {op} ")?;
                    }
                    let paren = matches!(x, ObservationExpr::Combined { op: inner, .. } if inner.precedence() <= op.precedence());
                    if paren {
                        write!(f, "({x})")?;
                    } else {
                        write!(f, "{x}")?;
                    }
                }
                Ok(())
            }
            ObservationExpr::Qualified {
                expr, qualifier, ..
            } => {
                let paren = matches!(**expr, ObservationExpr::Combined { .. })
                    || directly_qualified(expr, qualifier.keyword());
                if paren {
                    write!(f, "({expr}) {qualifier}")
                } else {
                    write!(f, "{expr} {qualifier}")
                }
            }
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Patterns from the STIX 2.1 specification's patterning section (§9) and its examples,
    /// plus grammar corners; every one must parse.
    pub(super) const VALID: &[&str] = &[
        r"[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']",
        r"[email-message:from_ref.value MATCHES '.+\\@example\\.com$' AND email-message:body_multipart[*].body_raw_ref.name MATCHES '^Final Report.+\\.exe$']",
        r"[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f' AND file:mime_type = 'application/x-pdf']",
        r"[file:hashes.'SHA-256' = 'bf07a7fbb825fc0aae7bf4a1177b2b31fcf8a3feeaf7092761e18c859ee52a9c' OR file:hashes.MD5 = 'cead3f77f6cda6ec00f57d76c9a6879f'] AND [file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']",
        r"[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f'] FOLLOWEDBY [windows-registry-key:key = 'HKEY_LOCAL_MACHINE\\foo\\bar'] WITHIN 300 SECONDS",
        r"[user-account:account_type = 'unix' AND user-account:user_id = '1007' AND user-account:account_login = 'Peter'] AND [user-account:account_type = 'unix' AND user-account:user_id = '1008' AND user-account:account_login = 'Paul'] AND [user-account:account_type = 'unix' AND user-account:user_id = '1009' AND user-account:account_login = 'Mary']",
        r"[artifact:mime_type = 'application/vnd.tcpdump.pcap' AND artifact:payload_bin MATCHES '\\xd4\\xc3\\xb2\\xa1\\x02\\x00\\x04\\x00']",
        r"[file:name = 'foo.dll' AND file:parent_directory_ref.path = 'C:\\Windows\\System32']",
        r"[file:extensions.'windows-pebinary-ext'.sections[*].entropy > 7.0]",
        r"[file:mime_type = 'image/bmp' AND file:magic_number_hex = h'ffd8']",
        r"[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = '203.0.113.33/32']",
        r"[network-traffic:dst_ref.type = 'domain-name' AND network-traffic:dst_ref.value = 'example.com'] REPEATS 5 TIMES WITHIN 1800 SECONDS",
        r"[domain-name:value = 'www.5z8.info' AND domain-name:resolves_to_refs[*].value = '198.51.100.1/32']",
        r"[url:value = 'http://example.com/foo' OR url:value = 'http://example.com/bar']",
        r"[x509-certificate:issuer = 'CN=WEBMAIL' AND x509-certificate:serial_number = '4c:0b:1d:19:74:86:a7:66:b4:1a:bf:40:27:21:76:28']",
        r"[windows-registry-key:key = 'HKEY_LOCAL_MACHINE\\\\System\\\\Foo\\\\Bar']",
        r"[windows-registry-key:key = 'HKEY_CURRENT_USER\\Software\\CryptoLocker\\Files' OR windows-registry-key:key = 'HKEY_CURRENT_USER\\Software\\Microsoft\\CurrentVersion\\Run\\CryptoLocker_0388']",
        r"[(file:name = 'pdf.exe' OR file:size = '371712') AND file:created = t'2014-01-13T07:03:17Z']",
        r"[email-message:sender_ref.value = 'jdoe@example.com' AND email-message:subject = 'Conference Info']",
        r"[x-usb-device:usbdrive.serial_number = '575833303130323031383936']",
        r"[process:command_line MATCHES '^.+>-add GlobalSign.cer -c -s -r localMachine Root$'] FOLLOWEDBY [process:command_line MATCHES '^.+>-add GlobalSign.cer -c -s -r localMachineTrustedPublisher$'] WITHIN 300 SECONDS",
        r"[network-traffic:dst_ref.value ISSUBSET '2001:0db8:dead:beef:0000:0000:0000:0000/64']",
        r"([file:name = 'foo.dll'] AND [win-registry-key:key = 'HKEY_LOCAL_MACHINE\\foo\\bar']) OR [process:name = 'fooproc' OR process:name = 'procfoo']",
        r"[file:hashes.MD5 = '79054025255fb1a26e4bc422aef54eb4'] START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'",
        r"[ipv4-addr:value = '198.51.100.1/32' OR ipv4-addr:value = '203.0.113.33/32' OR ipv6-addr:value = '2001:0db8:dead:beef:dead:beef:dead:0001/128']",
        r"[network-traffic:src_port NOT IN (80, 443)]",
        r"[file:name LIKE 'doc%.exe']",
        r"[ipv4-addr:value ISSUBSET '198.51.100.0/24']",
        r"[ipv4-addr:value NOT ISSUPERSET '198.51.100.0/24']",
        r"[network-traffic:extensions.'http-request-ext'.request_header.'User-Agent' = 'x']",
        r"[artifact:payload_bin = b'dGhpcyBpcyBhIHRlc3Q=']",
        r"[file:magic_number_hex = h'ffd8']",
        r"[EXISTS process:pid]",
        r"[file:size >= 1024 AND file:size <= -1 AND file:size < +5 AND file:size != 3 AND file:size <> 4 AND file:size == 5]",
        r"[file:size IN ()]",
        r"[network-traffic:protocols[0] = 'tcp' AND network-traffic:protocols[-1] = 'http' AND x-custom:flag = true AND x-custom:off = false]",
        r"[x:ratio = -.5 AND x:other = +.25 AND x:d = 0]",
        r"[file:hashes.MD5 = 'cead3f77f6cda6ec00f57d76c9a6879f'] REPEATS 5 TIMES",
        r"([file:name = 'a'] WITHIN 5 SECONDS) WITHIN 10 SECONDS",
        r"[file:name = 'a'] WITHIN 2.5 SECONDS",
        r"[a:b = 1] REPEATS 2 TIMES WITHIN 5 SECONDS START t'2016-06-01T00:00:00.123Z' STOP t'2016-12-31T23:59:60Z'",
        "/* leading comment */ [ipv4-addr:value = '198.51.100.1'] // trailing comment",
        "[ipv4-addr:value\n\t=\u{a0}'198.51.100.1'\u{3000}]",
        r"[a:'quoted first'.'key with \'quote\''.x = 'v']",
        r"[a:b = 'x'] AND [a:c = 'y'] OR [a:d = 'z'] FOLLOWEDBY [a:e = 'w']",
        r"[a:b = 1]WITHIN 5SECONDS",
        r"[x-foo_bar:_x = 'y']",
        // Valid as the OASIS validator reads them: a day its month lacks, and a qualifier
        // repeated on a parenthesised expression.
        r"[a:b = t'2016-02-30T00:00:00Z'] START t'2023-02-29T00:00:00Z' STOP t'2024-04-31T00:00:00Z'",
        r"([a:b = 1]) WITHIN 5 SECONDS WITHIN 6 SECONDS",
        r"([a:b = 1] REPEATS 2 TIMES) REPEATS 2 TIMES",
    ];

    #[test]
    fn every_spec_example_parses() {
        for p in VALID {
            if let Err(e) = parse(p) {
                panic!("{p}\n  {e}");
            }
        }
    }

    #[test]
    fn canonical_text_parses_back_to_the_same_tree() {
        for p in VALID {
            let tree = parse(p).unwrap();
            let text = tree.to_string();
            let again = parse(&text).unwrap_or_else(|e| panic!("{p}\n→ {text}\n  {e}"));
            assert_eq!(again.to_string(), text, "{p}");
        }
        assert_eq!(
            parse("[a:b = 1 OR (a:c = 2 OR a:d = 3)] WITHIN 5 SECONDS")
                .unwrap()
                .to_string(),
            "[a:b = 1 OR (a:c = 2 OR a:d = 3)] WITHIN 5 SECONDS"
        );
        assert_eq!(
            parse(r"[file:hashes.'SHA-256' = 'o\'b\\c' AND x:'IN' = 'y' AND file:hashes.MD5 = h'0AfF']")
                .unwrap()
                .to_string(),
            r"[file:hashes.'SHA-256' = 'o\'b\\c' AND x:'IN' = 'y' AND file:hashes.MD5 = h'0aff']"
        );
    }

    fn obs_shape(e: &ObservationExpr) -> String {
        match e {
            ObservationExpr::Observation(ComparisonExpr::Test(c)) => c.path.object_type.clone(),
            ObservationExpr::Observation(_) => "cmp".into(),
            ObservationExpr::Combined { op, operands, .. } => format!(
                "{op}({})",
                operands.iter().map(obs_shape).collect::<Vec<_>>().join(",")
            ),
            ObservationExpr::Qualified {
                expr, qualifier, ..
            } => format!("{}<{}>", qualifier.keyword(), obs_shape(expr)),
        }
    }

    #[test]
    fn precedence_is_and_then_or_then_followedby_with_qualifiers_tightest() {
        let cases = [
            ("[a:x = 1] OR [b:x = 1] AND [c:x = 1]", "OR(a,AND(b,c))"),
            ("[a:x = 1] AND [b:x = 1] OR [c:x = 1]", "OR(AND(a,b),c)"),
            (
                "[a:x = 1] FOLLOWEDBY [b:x = 1] OR [c:x = 1]",
                "FOLLOWEDBY(a,OR(b,c))",
            ),
            (
                "([a:x = 1] FOLLOWEDBY [b:x = 1]) OR [c:x = 1]",
                "OR(FOLLOWEDBY(a,b),c)",
            ),
            ("[a:x = 1] OR [b:x = 1] OR [c:x = 1]", "OR(a,b,c)"),
            (
                "[a:x = 1] AND [b:x = 1] WITHIN 5 SECONDS",
                "AND(a,WITHIN<b>)",
            ),
            (
                "([a:x = 1] AND [b:x = 1]) WITHIN 5 SECONDS",
                "WITHIN<AND(a,b)>",
            ),
            (
                "[a:x = 1] REPEATS 2 TIMES WITHIN 5 SECONDS",
                "WITHIN<REPEATS<a>>",
            ),
        ];
        for (p, want) in cases {
            assert_eq!(obs_shape(&parse(p).unwrap().root), want, "{p}");
        }
        let inner = match parse("[a:x = 1 OR a:y = 2 AND a:z = 3]").unwrap().root {
            ObservationExpr::Observation(c) => c,
            other => panic!("{other:?}"),
        };
        assert!(
            matches!(&inner, ComparisonExpr::Or(xs) if xs.len() == 2 && matches!(xs[1], ComparisonExpr::And(_))),
            "{inner:?}"
        );
    }

    #[test]
    fn literals_and_paths_are_decoded() {
        let p = parse(
            r"[file:extensions.'windows-pebinary-ext'.sections[*].entropy > 7.0 AND a:b[-2] = b'dGVzdA==' AND a:c = h'ffD8' AND a:d = t'2014-01-13T07:03:17.5Z' AND a:e = 'it\'s \\ok']",
        )
        .unwrap();
        let ObservationExpr::Observation(ComparisonExpr::And(xs)) = p.root else {
            panic!()
        };
        let tests: Vec<&Comparison> = xs
            .iter()
            .map(|x| match x {
                ComparisonExpr::Test(c) => c,
                _ => panic!(),
            })
            .collect();
        assert_eq!(
            tests[0].path.steps,
            vec![
                PathStep::Key("extensions".into()),
                PathStep::Key("windows-pebinary-ext".into()),
                PathStep::Key("sections".into()),
                PathStep::AnyIndex,
                PathStep::Key("entropy".into())
            ]
        );
        assert_eq!(tests[0].operand, Operand::Literal(Literal::Float(7.0)));
        assert_eq!(tests[1].path.steps[1], PathStep::Index(-2));
        assert_eq!(
            tests[1].operand,
            Operand::Literal(Literal::Binary(b"test".to_vec()))
        );
        assert_eq!(
            tests[2].operand,
            Operand::Literal(Literal::Hex(vec![0xff, 0xd8]))
        );
        assert_eq!(
            tests[3].operand,
            Operand::Literal(Literal::Timestamp(
                TimeLiteral::parse("2014-01-13T07:03:17.5Z").unwrap()
            ))
        );
        assert_eq!(
            tests[4].operand,
            Operand::Literal(Literal::String(r"it's \ok".into()))
        );
        assert_eq!(
            tests[4].position,
            Position {
                line: 1,
                column: 151
            }
        );
        let set = parse("[network-traffic:src_port NOT IN (80, '443', true)]").unwrap();
        let ObservationExpr::Observation(ComparisonExpr::Test(c)) = set.root else {
            panic!()
        };
        assert!(c.negated);
        assert_eq!(c.operator, Operator::In);
        assert_eq!(
            c.operand,
            Operand::Set(vec![
                Literal::Int(80),
                Literal::String("443".into()),
                Literal::Bool(true)
            ])
        );
    }

    #[test]
    fn malformed_patterns_are_rejected_with_a_position() {
        use ErrorCode::*;
        let cases: &[(&str, ErrorCode, u32, u32, &str)] = &[
            (
                "[file:size = ]",
                Syntax,
                1,
                14,
                "expected a value after `=`, found `]`",
            ),
            (
                "[file:hashes.MD5 = e69894213ec071803808fb5c7e66ab8d]",
                Syntax,
                1,
                20,
                "string values are quoted",
            ),
            (
                "[file:hashes.MD5 = 79054025255fb1a26e4bc422aef54eb4]",
                Syntax,
                1,
                20,
                "is not a number",
            ),
            (
                "[a:b = 1] within 5 SECONDS",
                Syntax,
                1,
                11,
                "keywords are upper case: `WITHIN`",
            ),
            (
                "[a:b = 1] OR [a:c = 2",
                Syntax,
                1,
                22,
                "`]` to close the `[` at line 1 column 14",
            ),
            ("[a:b = 1]]", Syntax, 1, 10, "found `]`"),
            (
                "([a:b = 1]",
                Syntax,
                1,
                11,
                "`)` to close the `(` at line 1 column 1",
            ),
            (
                "[url:value = 'a\\x41']",
                BadEscape,
                1,
                16,
                "`\\x` is not an escape",
            ),
            ("[url:value = 'abc]", Syntax, 1, 14, "unterminated string"),
            (
                "[a:b = 1] START t'2016-06-01T00:00:00' STOP t'2016-07-01T00:00:00Z'",
                Syntax,
                1,
                17,
                "literal `Z`",
            ),
            (
                "[a:b = t'2016-13-01T00:00:00Z']",
                Syntax,
                1,
                8,
                "out of range",
            ),
            (
                "[file:hashes.SHA-256 = 'x']",
                Syntax,
                1,
                14,
                "quote it: 'SHA-256'",
            ),
            (
                "[a:b = 1]\n  and [a:c = 2]",
                Syntax,
                2,
                3,
                "keywords are upper case",
            ),
            (
                "[a:b = 1] WITHIN 0 SECONDS",
                Syntax,
                1,
                18,
                "positive number",
            ),
            (
                "[a:b = 1] REPEATS 2.5 TIMES",
                Syntax,
                1,
                19,
                "positive integer",
            ),
            (
                "[a:b = 1] WITHIN 5 SECONDS WITHIN 6 SECONDS",
                Syntax,
                1,
                28,
                "applied twice",
            ),
            (
                "[a:b = 1] REPEATS 2 TIMES WITHIN 5 SECONDS REPEATS 3 TIMES",
                Syntax,
                1,
                44,
                "applied twice",
            ),
            (
                "[a:b = 1] START '2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'",
                Syntax,
                1,
                17,
                "timestamp",
            ),
            ("[a:b LIKE 5]", Syntax, 1, 11, "a string '…' after LIKE"),
            ("[a:b > true]", Syntax, 1, 8, "no order"),
            ("[a:b IN (1, 2]", Syntax, 1, 14, "`,` or `)`"),
            ("[a:b = 007]", Syntax, 1, 8, "leading zero"),
            ("[a:b = 99999999999999999]", Syntax, 1, 8, "out of range"),
            ("[a:b = h'abc']", Syntax, 1, 8, "pairs of hex digits"),
            ("[a:b = b'abc']", Syntax, 1, 8, "base64"),
            ("[a:b = b'']", Syntax, 1, 8, "base64"),
            ("[a:IN = 1]", Syntax, 1, 4, "is a keyword"),
            (
                "[a:b = 1] AND",
                Syntax,
                1,
                14,
                "found the end of the pattern",
            ),
            ("", Syntax, 1, 1, "`[` or `(`"),
            ("[]", Syntax, 1, 2, "object path"),
            ("[a:b = 1] /* open", Syntax, 1, 11, "unterminated `/*`"),
            ("[a:b ! 1]", Syntax, 1, 6, "`!=`"),
            ("[a:b = 1] # x", Syntax, 1, 11, "unexpected character `#`"),
            ("[NOT a:b = 1]", Syntax, 1, 2, "NOT goes between"),
            ("[a:b = TRUE]", Syntax, 1, 8, "identifier `TRUE`"),
            ("[a:b[x] = 1]", Syntax, 1, 6, "a list index or `*`"),
            ("[a:b = 1] FOLLOWEDBY", Syntax, 1, 21, "`[` or `(`"),
            ("[a:b = '1'", Syntax, 1, 11, "`]`"),
            (
                "[process:pid EXISTS]",
                Syntax,
                1,
                14,
                "a comparison operator",
            ),
        ];
        for (p, code, line, column, msg) in cases {
            let e = match parse(p) {
                Ok(t) => panic!("{p:?} parsed as {t}"),
                Err(e) => e,
            };
            assert_eq!(
                (e.code, e.line, e.column),
                (*code, *line, *column),
                "{p:?}: {e}"
            );
            assert!(e.message.contains(msg), "{p:?}: {e}");
        }
    }

    #[test]
    fn fuzz_seeds_are_what_their_names_say() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/stix_pattern");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let parsed = parse(&text);
            if name.starts_with("valid-") {
                assert!(parsed.is_ok(), "{name}: {:?}", parsed.err());
            } else {
                assert!(parsed.is_err(), "{name} parsed");
            }
            seen += 1;
        }
        assert!(seen >= 40, "{seen} seeds");
    }

    #[test]
    fn error_text_names_code_line_and_column() {
        let e = parse("[file:size = ]").unwrap_err();
        assert_eq!(
            e.to_string(),
            "E_SYNTAX at line 1 column 14: expected a value after `=`, found `]`"
        );
    }

    #[test]
    fn limits_refuse_huge_and_deep_patterns() {
        let huge = format!("[a:b = '{}']", "x".repeat(MAX_PATTERN_LEN));
        let e = parse(&huge).unwrap_err();
        assert_eq!((e.code, e.line, e.column), (ErrorCode::TooComplex, 1, 1));

        let nest = |n: usize| format!("{}[a:b = 1]{}", "(".repeat(n), ")".repeat(n));
        assert!(parse(&nest(MAX_DEPTH - 1)).is_ok());
        let e = parse(&nest(MAX_DEPTH)).unwrap_err();
        assert_eq!(e.code, ErrorCode::TooComplex);
        let deep_cmp = format!("[{}a:b = 1{}]", "(".repeat(10_000), ")".repeat(10_000));
        assert_eq!(parse(&deep_cmp).unwrap_err().code, ErrorCode::TooComplex);
        // Long flat chains are not nesting.
        let flat = vec!["[a:b = 1]"; 2000].join(" OR ");
        assert!(parse(&flat).is_ok());
    }

    #[test]
    fn a_day_its_month_lacks_is_kept_as_written_and_names_no_instant() {
        let t = TimeLiteral::parse("2023-02-29T12:00:00.50Z").unwrap();
        assert_eq!(t.instant(), None);
        assert_eq!(t.to_string(), "2023-02-29T12:00:00.5Z");
        let leap = TimeLiteral::parse("2024-02-29T23:59:60Z").unwrap();
        assert_eq!(leap.to_string(), "2024-02-29T23:59:60Z");
        assert_eq!(leap.instant().unwrap().to_string(), "2024-02-29T23:59:59Z");
        assert!(
            parse_timestamp("2023-02-29T12:00:00Z")
                .unwrap_err()
                .contains("does not have")
        );
    }

    #[test]
    fn timestamps_follow_the_stix_form() {
        assert_eq!(
            parse_timestamp("2016-12-31T23:59:60Z").unwrap().to_string(),
            "2016-12-31T23:59:59Z"
        );
        assert_eq!(
            parse_timestamp("2016-06-01T00:00:00.1234567891234Z")
                .unwrap()
                .to_string(),
            "2016-06-01T00:00:00.123456789Z"
        );
        for bad in [
            "2016-06-01T00:00:00+01:00",
            "2016-06-01 00:00:00Z",
            "2016-06-01T00:00:00z",
            "2016-06-01T00:00:00.Z",
            "2016-06-01T24:00:00Z",
            "2016-6-01T00:00:00Z",
            "é016-06-01T00:00:00Z",
            "Z",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base64_round_trips() {
        for data in [&b"t"[..], b"te", b"tes", b"test", b"\x00\xff\x10"] {
            let enc = encode_base64(data);
            assert_eq!(decode_base64(&enc).as_deref(), Some(data), "{enc}");
        }
        assert_eq!(encode_base64(b"this is a test"), "dGhpcyBpcyBhIHRlc3Q=");
    }

    fn mutate(seed: &str, at: usize, len: usize, c: char, how: u8) -> String {
        let chars: Vec<char> = seed.chars().collect();
        let at = at % (chars.len() + 1);
        let end = (at + len % 8).min(chars.len());
        let mut out: Vec<char> = chars[..at].to_vec();
        match how % 4 {
            0 => out.extend_from_slice(&chars[end..]),
            1 => {
                out.push(c);
                out.extend_from_slice(&chars[at..]);
            }
            2 => {
                out.extend_from_slice(&chars[at..end]);
                out.extend_from_slice(&chars[at..]);
            }
            _ => {
                out.push(c);
                out.extend_from_slice(&chars[end..]);
            }
        }
        out.into_iter().collect()
    }

    /// `parse` never panics; what it accepts prints canonically and parses back to the same
    /// text; and compiling it never panics either.
    fn check_law(input: &str) {
        if let Ok(tree) = parse(input) {
            let _ = super::super::compile::compile(&tree);
            let text = tree.to_string();
            let again = parse(&text).unwrap_or_else(|e| panic!("{input:?} → {text:?}: {e}"));
            assert_eq!(again.to_string(), text);
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(s in "\\PC{0,200}") {
            check_law(&s);
        }

        #[test]
        fn never_panics_on_pattern_alphabet(s in "[\\[\\]()'.:=<>!, a-zA-Z0-9_*+/\\\\-]{0,120}") {
            check_law(&s);
        }

        #[test]
        fn never_panics_on_mutated_examples(
            seed in 0..VALID.len(),
            at in any::<usize>(),
            len in any::<usize>(),
            c in prop::sample::select(vec!['\'', '\\', '[', ']', '(', ')', '.', ':', ' ', 'Z', '-', '*', '/', 'é', 'A', '0', '=']),
            how in any::<u8>(),
        ) {
            check_law(&mutate(VALID[seed], at, len, c, how));
        }
    }
}
