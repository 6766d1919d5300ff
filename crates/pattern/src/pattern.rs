//! The parsed form of a pattern and its canonical text.

use std::fmt;

use crate::social::SocialNetwork;

/// A value a placeholder draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variable {
    /// `{username}`: the creator's username in the suite.
    Username,
    /// `{first_name}`.
    FirstName,
    /// `{last_name}`.
    LastName,
    /// `{full_name}`: first and last name together.
    FullName,
    /// `{campaign}`: the campaign's name.
    Campaign,
    /// `{discount}`: the plan's discount as digits (see [`crate::Discount`]).
    Discount,
    /// `{instagram}`, `{tiktok}`…: the creator's handle on that network.
    Social(SocialNetwork),
    /// `{random:N}`: N characters from [`crate::RANDOM_ALPHABET`].
    Random(u8),
}

impl Variable {
    /// The name written in patterns, without any argument: `first_name`, `random`.
    pub const fn name(self) -> &'static str {
        match self {
            Variable::Username => "username",
            Variable::FirstName => "first_name",
            Variable::LastName => "last_name",
            Variable::FullName => "full_name",
            Variable::Campaign => "campaign",
            Variable::Discount => "discount",
            Variable::Social(network) => network.as_str(),
            Variable::Random(_) => "random",
        }
    }

    /// Whether the value differs from creator to creator (and so tells
    /// creators' codes apart without any randomness). The campaign and the
    /// discount are shared by everyone on a plan.
    pub const fn is_per_creator(self) -> bool {
        match self {
            Variable::Username
            | Variable::FirstName
            | Variable::LastName
            | Variable::FullName
            | Variable::Social(_) => true,
            Variable::Campaign | Variable::Discount | Variable::Random(_) => false,
        }
    }
}

impl fmt::Display for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Variable::Random(len) => write!(f, "random:{len}"),
            other => f.write_str(other.name()),
        }
    }
}

/// A transformation applied to a placeholder's value, after `|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Filter {
    Upper,
    Lower,
    Trunc(u8),
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Upper => f.write_str("upper"),
            Filter::Lower => f.write_str("lower"),
            Filter::Trunc(len) => write!(f, "trunc:{len}"),
        }
    }
}

/// The letter case a placeholder's output is forced to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Case {
    Upper,
    Lower,
}

impl Case {
    pub(crate) const fn apply(self, byte: u8) -> u8 {
        match self {
            Case::Upper => byte.to_ascii_uppercase(),
            Case::Lower => byte.to_ascii_lowercase(),
        }
    }
}

/// `{variable|filter|…}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Placeholder {
    pub(crate) variable: Variable,
    /// As written, for display.
    filters: Vec<Filter>,
    /// The chain compiled for rendering. Filters see ASCII text (values are
    /// transliterated first), on which case changes keep the length and
    /// commute with truncation; so any chain is the last case filter plus the
    /// shortest truncation.
    pub(crate) case: Option<Case>,
    pub(crate) limit: Option<usize>,
}

impl Placeholder {
    pub(crate) fn new(variable: Variable, filters: Vec<Filter>) -> Self {
        let mut case = None;
        let mut limit: Option<usize> = None;
        for filter in &filters {
            match *filter {
                Filter::Upper => case = Some(Case::Upper),
                Filter::Lower => case = Some(Case::Lower),
                Filter::Trunc(len) => {
                    let len = usize::from(len);
                    limit = Some(limit.map_or(len, |previous| previous.min(len)));
                }
            }
        }
        Self {
            variable,
            filters,
            case,
            limit,
        }
    }
}

/// A piece of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Segment {
    /// Text copied into the code (after the same normalization as values).
    /// Adjacent literal text is always merged into one segment, so that equal
    /// patterns have equal segments.
    Literal(String),
    Placeholder(Placeholder),
}

/// A parsed discount-code pattern; see the [crate documentation](crate) for the language.
///
/// Build one with [`Pattern::parse`] (or `str::parse`). Its `Display` output is
/// the canonical source text, which parses back to an equal pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    pub(crate) segments: Vec<Segment>,
    /// Derived from `segments` once, so rendering and the accessors don't rescan.
    variables: Vec<Variable>,
    social_networks: Vec<SocialNetwork>,
    random_chars: usize,
}

impl Pattern {
    pub(crate) fn from_segments(segments: Vec<Segment>) -> Self {
        let mut variables = Vec::new();
        let mut social_networks = Vec::new();
        let mut random_chars = 0;
        for segment in &segments {
            let Segment::Placeholder(placeholder) = segment else {
                continue;
            };
            let variable = placeholder.variable;
            if !variables.contains(&variable) {
                variables.push(variable);
            }
            match variable {
                Variable::Social(network) if !social_networks.contains(&network) => {
                    social_networks.push(network);
                }
                Variable::Random(len) => random_chars += usize::from(len),
                _ => {}
            }
        }
        Self {
            segments,
            variables,
            social_networks,
            random_chars,
        }
    }

    /// The distinct variables the pattern uses, in order of first use.
    /// `random:4` and `random:6` are distinct variables.
    pub fn variables(&self) -> &[Variable] {
        &self.variables
    }

    /// The distinct social networks whose handles the pattern needs, in order of first use.
    pub fn social_networks(&self) -> &[SocialNetwork] {
        &self.social_networks
    }

    /// The total number of random characters across all `random:N` placeholders.
    pub fn random_chars(&self) -> usize {
        self.random_chars
    }

    /// Whether some variable differs from creator to creator (see [`Variable::is_per_creator`]).
    pub fn has_per_creator_variable(&self) -> bool {
        self.variables
            .iter()
            .any(|variable| variable.is_per_creator())
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => {
                    for piece in text.split_inclusive(['{', '}']) {
                        f.write_str(piece)?;
                        // Double a trailing brace to escape it.
                        if let Some(brace @ ('{' | '}')) = piece.chars().next_back() {
                            write!(f, "{brace}")?;
                        }
                    }
                }
                Segment::Placeholder(placeholder) => {
                    write!(f, "{{{}", placeholder.variable)?;
                    for filter in &placeholder.filters {
                        write!(f, "|{filter}")?;
                    }
                    f.write_str("}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placeholder(variable: Variable, filters: Vec<Filter>) -> Segment {
        Segment::Placeholder(Placeholder::new(variable, filters))
    }

    #[test]
    fn filter_chains_compile_to_last_case_and_shortest_limit() {
        let chain = Placeholder::new(
            Variable::FirstName,
            vec![
                Filter::Trunc(5),
                Filter::Lower,
                Filter::Trunc(3),
                Filter::Upper,
                Filter::Trunc(4),
            ],
        );
        assert_eq!(chain.case, Some(Case::Upper));
        assert_eq!(chain.limit, Some(3));

        let bare = Placeholder::new(Variable::FirstName, Vec::new());
        assert_eq!(bare.case, None);
        assert_eq!(bare.limit, None);
    }

    #[test]
    fn derived_data_lists_distinct_uses_in_order() {
        let pattern = Pattern::from_segments(vec![
            placeholder(Variable::Social(SocialNetwork::TikTok), Vec::new()),
            Segment::Literal("-".to_owned()),
            placeholder(Variable::Random(4), Vec::new()),
            placeholder(Variable::Social(SocialNetwork::Instagram), Vec::new()),
            placeholder(Variable::Social(SocialNetwork::TikTok), vec![Filter::Lower]),
            placeholder(Variable::Random(4), Vec::new()),
            placeholder(Variable::Random(2), Vec::new()),
        ]);
        assert_eq!(
            pattern.variables(),
            [
                Variable::Social(SocialNetwork::TikTok),
                Variable::Random(4),
                Variable::Social(SocialNetwork::Instagram),
                Variable::Random(2),
            ]
        );
        assert_eq!(
            pattern.social_networks(),
            [SocialNetwork::TikTok, SocialNetwork::Instagram]
        );
        assert_eq!(pattern.random_chars(), 10);
        assert!(pattern.has_per_creator_variable());
    }

    #[test]
    fn per_creator_variables() {
        assert!(Variable::Username.is_per_creator());
        assert!(Variable::FullName.is_per_creator());
        assert!(Variable::Social(SocialNetwork::Twitch).is_per_creator());
        assert!(!Variable::Campaign.is_per_creator());
        assert!(!Variable::Discount.is_per_creator());
        assert!(!Variable::Random(8).is_per_creator());
    }

    #[test]
    fn display_escapes_braces_and_writes_filters() {
        let pattern = Pattern::from_segments(vec![
            Segment::Literal("{a}}".to_owned()),
            placeholder(
                Variable::FirstName,
                vec![Filter::Trunc(3), Filter::Upper, Filter::Lower],
            ),
            placeholder(Variable::Random(12), Vec::new()),
            placeholder(Variable::Social(SocialNetwork::YouTube), Vec::new()),
        ]);
        assert_eq!(
            pattern.to_string(),
            "{{a}}}}{first_name|trunc:3|upper|lower}{random:12}{youtube}"
        );
    }
}
