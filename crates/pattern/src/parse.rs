//! Pattern source text to [`Pattern`].

use std::str::FromStr;

use crate::pattern::{Filter, Pattern, Placeholder, Segment, Variable};
use crate::social::SocialNetwork;

/// The longest accepted pattern, in characters.
pub const MAX_PATTERN_CHARS: usize = 200;

/// The largest N in `random:N`.
pub const MAX_RANDOM_CHARS: u8 = 32;

/// The largest N in `trunc:N`. No shop accepts codes longer than this, so a
/// larger limit could never take effect.
pub const MAX_TRUNC: u8 = u8::MAX;

/// Why a pattern was rejected. Positions are byte offsets into the source.
///
/// [`Pattern::check_keyspace`] also reports through this type, with the
/// `KeyspaceTooSmall` and `NoPerCreatorPart` variants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("the pattern is empty")]
    Empty,
    #[error("the pattern is {length} characters long; the limit is {max}")]
    TooLong { length: usize, max: usize },
    #[error("unknown variable `{name}` at byte {position}")]
    UnknownVariable { name: String, position: usize },
    #[error("unknown filter `{name}` at byte {position}")]
    UnknownFilter { name: String, position: usize },
    #[error("`{{` at byte {position} is never closed (write `{{{{` for a literal brace)")]
    Unclosed { position: usize },
    #[error("stray `}}` at byte {position} (write `}}}}` for a literal brace)")]
    StrayClose { position: usize },
    #[error("the placeholder at byte {position} names no variable")]
    EmptyPlaceholder { position: usize },
    #[error("empty filter name at byte {position}")]
    EmptyFilter { position: usize },
    #[error("`{name}` at byte {position} needs a number, as in `{name}:4`")]
    MissingNumber { name: &'static str, position: usize },
    #[error("`{name}` takes no argument, but one is given at byte {position}")]
    UnexpectedArgument { name: &'static str, position: usize },
    #[error("`{text}` at byte {position} is not a number")]
    InvalidNumber { text: String, position: usize },
    #[error("`{name}:{text}` at byte {position} is out of range: N must be {min} to {max}")]
    OutOfRange {
        name: &'static str,
        text: String,
        min: u8,
        max: u8,
        position: usize,
    },
    #[error("`trunc` at byte {position} cannot shorten `random:N`; use a smaller N")]
    TruncOnRandom { position: usize },
    #[error(
        "random:{random_chars} gives {keyspace} codes, too few for {roster_size} creators \
         (at least {required} are needed)"
    )]
    KeyspaceTooSmall {
        /// Total random characters in the pattern.
        random_chars: usize,
        keyspace: u128,
        roster_size: u64,
        required: u128,
    },
    #[error(
        "the pattern has neither a creator variable nor random:N, \
         so all {roster_size} creators would get the same code"
    )]
    NoPerCreatorPart { roster_size: u64 },
}

impl Pattern {
    /// Parses pattern source text; see the [crate documentation](crate) for the language.
    pub fn parse(source: &str) -> Result<Self, PatternError> {
        if source.is_empty() {
            return Err(PatternError::Empty);
        }
        let length = source.chars().count();
        if length > MAX_PATTERN_CHARS {
            return Err(PatternError::TooLong {
                length,
                max: MAX_PATTERN_CHARS,
            });
        }

        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut position = 0;
        while position < source.len() {
            // `position` only ever moves past whole characters.
            let rest = &source[position..];
            if rest.starts_with("{{") {
                literal.push('{');
                position += 2;
            } else if rest.starts_with("}}") {
                literal.push('}');
                position += 2;
            } else if rest.starts_with('}') {
                return Err(PatternError::StrayClose { position });
            } else if let Some(inside) = rest.strip_prefix('{') {
                // A placeholder ends at the first `}`; a `{` before it means
                // this one was never closed.
                let body = match inside.find(['{', '}']) {
                    Some(end) if inside[end..].starts_with('}') => &inside[..end],
                    _ => return Err(PatternError::Unclosed { position }),
                };
                if !literal.is_empty() {
                    segments.push(Segment::Literal(std::mem::take(&mut literal)));
                }
                let placeholder = parse_placeholder(body, position)?;
                segments.push(Segment::Placeholder(placeholder));
                position += body.len() + 2;
            } else {
                let run = rest.find(['{', '}']).unwrap_or(rest.len());
                literal.push_str(&rest[..run]);
                position += run;
            }
        }
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Pattern::from_segments(segments))
    }
}

impl FromStr for Pattern {
    type Err = PatternError;

    fn from_str(source: &str) -> Result<Self, Self::Err> {
        Self::parse(source)
    }
}

/// Parses the text between `{` (at `open`) and `}`.
fn parse_placeholder(body: &str, open: usize) -> Result<Placeholder, PatternError> {
    let mut parts = Parts::new(body, open + 1, '|');
    // `split` always yields at least one part, even for an empty body.
    let (variable_position, variable_text) = parts.next().unwrap_or((open + 1, ""));
    let variable = parse_variable(variable_text, variable_position, open)?;
    let mut filters = Vec::new();
    for (position, text) in parts {
        let filter = parse_filter(text, position)?;
        if matches!((filter, variable), (Filter::Trunc(_), Variable::Random(_))) {
            // Truncating random characters would silently shrink the keyspace
            // that `check_keyspace` vouched for.
            return Err(PatternError::TruncOnRandom { position });
        }
        filters.push(filter);
    }
    Ok(Placeholder::new(variable, filters))
}

fn parse_variable(text: &str, position: usize, open: usize) -> Result<Variable, PatternError> {
    let (name, argument) = split_argument(text, position);
    let variable = match name {
        "" => return Err(PatternError::EmptyPlaceholder { position: open }),
        "random" => {
            let (argument_position, argument_text) =
                argument.ok_or(PatternError::MissingNumber {
                    name: "random",
                    position,
                })?;
            let len = parse_number(
                "random",
                argument_text,
                argument_position,
                1,
                MAX_RANDOM_CHARS,
            )?;
            return Ok(Variable::Random(len));
        }
        "username" => Variable::Username,
        "first_name" => Variable::FirstName,
        "last_name" => Variable::LastName,
        "full_name" => Variable::FullName,
        "campaign" => Variable::Campaign,
        "discount" => Variable::Discount,
        other => match SocialNetwork::from_name(other) {
            Some(network) => Variable::Social(network),
            None => {
                return Err(PatternError::UnknownVariable {
                    name: other.to_owned(),
                    position,
                });
            }
        },
    };
    match argument {
        Some((argument_position, _)) => Err(PatternError::UnexpectedArgument {
            name: variable.name(),
            position: argument_position,
        }),
        None => Ok(variable),
    }
}

fn parse_filter(text: &str, position: usize) -> Result<Filter, PatternError> {
    let (name, argument) = split_argument(text, position);
    let (filter, name) = match name {
        "" => return Err(PatternError::EmptyFilter { position }),
        "trunc" => {
            let (argument_position, argument_text) =
                argument.ok_or(PatternError::MissingNumber {
                    name: "trunc",
                    position,
                })?;
            let len = parse_number("trunc", argument_text, argument_position, 1, MAX_TRUNC)?;
            return Ok(Filter::Trunc(len));
        }
        "upper" => (Filter::Upper, "upper"),
        "lower" => (Filter::Lower, "lower"),
        other => {
            return Err(PatternError::UnknownFilter {
                name: other.to_owned(),
                position,
            });
        }
    };
    match argument {
        Some((argument_position, _)) => Err(PatternError::UnexpectedArgument {
            name,
            position: argument_position,
        }),
        None => Ok(filter),
    }
}

/// Splits `name:argument`; the argument comes with its byte position.
fn split_argument(text: &str, position: usize) -> (&str, Option<(usize, &str)>) {
    match text.split_once(':') {
        Some((name, argument)) => (name, Some((position + name.len() + 1, argument))),
        None => (text, None),
    }
}

/// Parses the N of `name:N`, which must be plain decimal digits within `min..=max`.
fn parse_number(
    name: &'static str,
    text: &str,
    position: usize,
    min: u8,
    max: u8,
) -> Result<u8, PatternError> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(PatternError::InvalidNumber {
            text: text.to_owned(),
            position,
        });
    }
    // All digits, so parsing fails only when the value overflows: out of range too.
    match text.parse::<u8>() {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(PatternError::OutOfRange {
            name,
            text: text.to_owned(),
            min,
            max,
            position,
        }),
    }
}

/// The pieces of `text` between `separator`s, each with its byte position
/// (`text` starts at `start`).
struct Parts<'a> {
    pieces: std::str::Split<'a, char>,
    next_position: usize,
}

impl<'a> Parts<'a> {
    fn new(text: &'a str, start: usize, separator: char) -> Self {
        Self {
            pieces: text.split(separator),
            next_position: start,
        }
    }
}

impl<'a> Iterator for Parts<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let piece = self.pieces.next()?;
        let position = self.next_position;
        // Every separator used here is one byte long.
        self.next_position += piece.len() + 1;
        Some((position, piece))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse_err(source: &str) -> PatternError {
        Pattern::parse(source).unwrap_err()
    }

    fn round_trip(source: &str) -> String {
        Pattern::parse(source).unwrap().to_string()
    }

    #[test]
    fn parses_literals_and_placeholders() {
        let pattern = Pattern::parse("SUMMER-{first_name|trunc:3|upper}{random:4}").unwrap();
        assert_eq!(
            pattern.segments,
            vec![
                Segment::Literal("SUMMER-".to_owned()),
                Segment::Placeholder(Placeholder::new(
                    Variable::FirstName,
                    vec![Filter::Trunc(3), Filter::Upper],
                )),
                Segment::Placeholder(Placeholder::new(Variable::Random(4), Vec::new())),
            ]
        );
    }

    #[test]
    fn parses_every_variable() {
        let source = "{username}{first_name}{last_name}{full_name}{campaign}{discount}\
                      {instagram}{tiktok}{youtube}{twitter}{facebook}{pinterest}{twitch}\
                      {snapchat}{random:1}{random:32}";
        let pattern = Pattern::parse(source).unwrap();
        let mut expected = vec![
            Variable::Username,
            Variable::FirstName,
            Variable::LastName,
            Variable::FullName,
            Variable::Campaign,
            Variable::Discount,
        ];
        expected.extend(SocialNetwork::ALL.map(Variable::Social));
        expected.extend([Variable::Random(1), Variable::Random(32)]);
        assert_eq!(pattern.variables(), expected);
        assert_eq!(pattern.social_networks(), SocialNetwork::ALL);
        assert_eq!(pattern.random_chars(), 33);
        assert_eq!(pattern.to_string(), source);
    }

    #[test]
    fn parses_every_filter() {
        let pattern = Pattern::parse("{username|upper|lower|trunc:1|trunc:255}").unwrap();
        assert_eq!(
            pattern.segments,
            vec![Segment::Placeholder(Placeholder::new(
                Variable::Username,
                vec![
                    Filter::Upper,
                    Filter::Lower,
                    Filter::Trunc(1),
                    Filter::Trunc(MAX_TRUNC),
                ],
            ))]
        );
    }

    #[test]
    fn case_filters_are_allowed_on_random() {
        let pattern = Pattern::parse("{random:4|lower}").unwrap();
        assert_eq!(pattern.random_chars(), 4);
    }

    #[test]
    fn doubled_braces_are_literal() {
        let pattern = Pattern::parse("{{a}}{username}}}").unwrap();
        assert_eq!(
            pattern.segments,
            vec![
                Segment::Literal("{a}".to_owned()),
                Segment::Placeholder(Placeholder::new(Variable::Username, Vec::new())),
                Segment::Literal("}".to_owned()),
            ]
        );
        // `{{` wins over opening a placeholder, as in Rust's format strings.
        let pattern = Pattern::parse("{{username}}").unwrap();
        assert_eq!(
            pattern.segments,
            vec![Segment::Literal("{username}".to_owned())]
        );
        assert!(pattern.variables().is_empty());
    }

    #[test]
    fn literal_only_patterns_parse() {
        let pattern = Pattern::parse("SUMMER25").unwrap();
        assert!(pattern.variables().is_empty());
        assert_eq!(pattern.random_chars(), 0);
    }

    #[test]
    fn display_is_canonical() {
        assert_eq!(round_trip("{random:04}"), "{random:4}");
        assert_eq!(round_trip("{username|trunc:007}"), "{username|trunc:7}");
        assert_eq!(round_trip("Ünïcode {{}} {tiktok}"), "Ünïcode {{}} {tiktok}");
    }

    #[test]
    fn length_limit_counts_characters() {
        let at_limit = "é".repeat(MAX_PATTERN_CHARS);
        assert!(Pattern::parse(&at_limit).is_ok());
        assert_eq!(
            parse_err(&format!("{at_limit}x")),
            PatternError::TooLong {
                length: MAX_PATTERN_CHARS + 1,
                max: MAX_PATTERN_CHARS,
            }
        );
    }

    #[test]
    fn empty_pattern() {
        assert_eq!(parse_err(""), PatternError::Empty);
    }

    #[test]
    fn unknown_variable() {
        assert_eq!(
            parse_err("AB-{foo}"),
            PatternError::UnknownVariable {
                name: "foo".to_owned(),
                position: 4,
            }
        );
        // Names are exact: no case folding, no spaces.
        assert!(matches!(
            parse_err("{Username}"),
            PatternError::UnknownVariable { position: 1, .. }
        ));
        assert!(matches!(
            parse_err("{ username}"),
            PatternError::UnknownVariable { position: 1, .. }
        ));
        assert_eq!(
            parse_err("AB-{foo}").to_string(),
            "unknown variable `foo` at byte 4"
        );
    }

    #[test]
    fn unknown_filter() {
        assert_eq!(
            parse_err("{username|upper|title}"),
            PatternError::UnknownFilter {
                name: "title".to_owned(),
                position: 16,
            }
        );
    }

    #[test]
    fn unclosed_brace() {
        assert_eq!(
            parse_err("ab{username"),
            PatternError::Unclosed { position: 2 }
        );
        assert_eq!(
            parse_err("{user{name}"),
            PatternError::Unclosed { position: 0 }
        );
        assert_eq!(parse_err("x{"), PatternError::Unclosed { position: 1 });
        assert_eq!(
            parse_err("x{").to_string(),
            "`{` at byte 1 is never closed (write `{{` for a literal brace)"
        );
    }

    #[test]
    fn stray_closing_brace() {
        assert_eq!(parse_err("ab}"), PatternError::StrayClose { position: 2 });
        assert_eq!(
            parse_err("{username}}x"),
            PatternError::StrayClose { position: 10 }
        );
        assert_eq!(
            parse_err("}").to_string(),
            "stray `}` at byte 0 (write `}}` for a literal brace)"
        );
    }

    #[test]
    fn empty_placeholder() {
        assert_eq!(
            parse_err("ab{}"),
            PatternError::EmptyPlaceholder { position: 2 }
        );
        assert_eq!(
            parse_err("{|upper}"),
            PatternError::EmptyPlaceholder { position: 0 }
        );
        assert_eq!(
            parse_err("{:3}"),
            PatternError::EmptyPlaceholder { position: 0 }
        );
    }

    #[test]
    fn empty_filter() {
        assert_eq!(
            parse_err("{username|}"),
            PatternError::EmptyFilter { position: 10 }
        );
        assert_eq!(
            parse_err("{username||upper}"),
            PatternError::EmptyFilter { position: 10 }
        );
    }

    #[test]
    fn missing_number() {
        assert_eq!(
            parse_err("{random}"),
            PatternError::MissingNumber {
                name: "random",
                position: 1,
            }
        );
        assert_eq!(
            parse_err("{username|trunc}"),
            PatternError::MissingNumber {
                name: "trunc",
                position: 10,
            }
        );
    }

    #[test]
    fn unexpected_argument() {
        assert_eq!(
            parse_err("{username:3}"),
            PatternError::UnexpectedArgument {
                name: "username",
                position: 10,
            }
        );
        assert_eq!(
            parse_err("{tiktok|upper:2}"),
            PatternError::UnexpectedArgument {
                name: "upper",
                position: 14,
            }
        );
    }

    #[test]
    fn invalid_numbers() {
        for (source, text, position) in [
            ("{random:}", "", 8),
            ("{random:x}", "x", 8),
            ("{random:+4}", "+4", 8),
            ("{random:-1}", "-1", 8),
            ("{random: 4}", " 4", 8),
            ("{random:4:4}", "4:4", 8),
            ("{username|trunc:3a}", "3a", 16),
        ] {
            assert_eq!(
                parse_err(source),
                PatternError::InvalidNumber {
                    text: text.to_owned(),
                    position,
                },
                "{source}"
            );
        }
    }

    #[test]
    fn numbers_out_of_range() {
        for (source, name, text, max) in [
            ("{random:0}", "random", "0", MAX_RANDOM_CHARS),
            ("{random:33}", "random", "33", MAX_RANDOM_CHARS),
            (
                "{random:99999999999999999999}",
                "random",
                "99999999999999999999",
                MAX_RANDOM_CHARS,
            ),
            ("{username|trunc:0}", "trunc", "0", MAX_TRUNC),
            ("{username|trunc:256}", "trunc", "256", MAX_TRUNC),
        ] {
            let error = parse_err(source);
            assert!(
                matches!(
                    &error,
                    PatternError::OutOfRange { name: n, text: t, min: 1, max: m, .. }
                        if *n == name && t == text && *m == max
                ),
                "{source}: {error:?}"
            );
        }
        assert_eq!(
            parse_err("{random:33}").to_string(),
            "`random:33` at byte 8 is out of range: N must be 1 to 32"
        );
    }

    #[test]
    fn trunc_on_random_is_rejected() {
        assert_eq!(
            parse_err("{random:8|trunc:4}"),
            PatternError::TruncOnRandom { position: 10 }
        );
    }

    #[test]
    fn first_error_wins() {
        assert_eq!(
            parse_err("{foo}}"),
            PatternError::UnknownVariable {
                name: "foo".to_owned(),
                position: 1,
            }
        );
    }

    #[test]
    fn positions_are_byte_offsets() {
        assert_eq!(
            parse_err("Jösé{foo}"),
            PatternError::UnknownVariable {
                name: "foo".to_owned(),
                position: 7,
            }
        );
    }

    #[test]
    fn from_str_parses() {
        let pattern: Pattern = "{username}".parse().unwrap();
        assert_eq!(pattern, Pattern::parse("{username}").unwrap());
    }
}
