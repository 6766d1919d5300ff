//! Rendering a pattern into a code for one creator.

use crate::discount::Discount;
use crate::pattern::{Case, Pattern, Segment, Variable};
use crate::rules::{AllowedChars, Rules};
use crate::social::{SocialHandles, SocialNetwork};
use crate::translit;

/// The characters `random:N` and [`append_suffix`] draw from: digits and
/// upper-case letters without the look-alikes 0, O, 1, I and L, so that codes
/// read out on a video or typed from a screenshot survive.
pub const RANDOM_ALPHABET: &str = "23456789ABCDEFGHJKMNPQRSTUVWXYZ";

/// A source of randomness for `random:N` and [`append_suffix`].
///
/// The crate does no I/O and picks no generator: callers pass a
/// cryptographically secure one, since random characters are what keeps
/// codes from being guessed. Closures `FnMut(usize) -> usize` implement it.
pub trait RandomSource {
    /// Returns an index drawn uniformly from `0..upper`; `upper` is at least 1.
    ///
    /// An out-of-range result is reduced modulo `upper` rather than trusted,
    /// so a faulty source cannot make rendering panic.
    fn fill_index(&mut self, upper: usize) -> usize;
}

impl<F: FnMut(usize) -> usize> RandomSource for F {
    fn fill_index(&mut self, upper: usize) -> usize {
        self(upper)
    }
}

/// Why no code could be rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// Nothing usable was left: the code would have no letter or digit.
    #[error("the code would be empty: no letter or digit remains after applying the rules")]
    Empty,
    /// The pattern uses a network on which the creator has no handle.
    #[error("the creator has no {0} account, which the pattern uses")]
    MissingSocialAccount(SocialNetwork),
    /// The pattern uses a profile value the creator lacks; named as in patterns
    /// (`first_name`, `discount`…).
    #[error("the creator has no {0}, which the pattern uses")]
    MissingField(&'static str),
}

/// What a pattern is rendered for: one creator on one campaign.
///
/// Values are borrowed so that rendering many codes does not copy profiles.
/// A value that is `None`, empty or only whitespace counts as missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Context<'a> {
    pub username: Option<&'a str>,
    pub first_name: Option<&'a str>,
    pub last_name: Option<&'a str>,
    /// The campaign's name.
    pub campaign: Option<&'a str>,
    /// The discount of the creator's plan.
    pub discount: Option<Discount>,
    /// Handles, with or without a leading `@`.
    pub social: SocialHandles<'a>,
}

/// A context value resolved for one placeholder.
enum Value<'a> {
    Text(&'a str),
    /// First and last name: either may be absent, not both.
    Names(Option<&'a str>, Option<&'a str>),
    Discount(Discount),
    Random(u8),
}

impl<'a> Context<'a> {
    fn resolve(&self, variable: Variable) -> Result<Value<'a>, RenderError> {
        let required = |value: Option<&'a str>| {
            present(value)
                .map(Value::Text)
                .ok_or(RenderError::MissingField(variable.name()))
        };
        match variable {
            Variable::Username => required(self.username),
            Variable::FirstName => required(self.first_name),
            Variable::LastName => required(self.last_name),
            Variable::Campaign => required(self.campaign),
            Variable::FullName => {
                let first = present(self.first_name);
                let last = present(self.last_name);
                if first.is_none() && last.is_none() {
                    return Err(RenderError::MissingField(variable.name()));
                }
                Ok(Value::Names(first, last))
            }
            Variable::Discount => self
                .discount
                .map(Value::Discount)
                .ok_or(RenderError::MissingField(variable.name())),
            Variable::Social(network) => {
                // Handles are often stored as `@name`; the `@` is not part of the name.
                let handle = self
                    .social
                    .get(network)
                    .map(|handle| handle.trim_start().strip_prefix('@').unwrap_or(handle));
                present(handle)
                    .map(Value::Text)
                    .ok_or(RenderError::MissingSocialAccount(network))
            }
            Variable::Random(len) => Ok(Value::Random(len)),
        }
    }
}

fn present(value: Option<&str>) -> Option<&str> {
    value.filter(|value| !value.trim().is_empty())
}

impl Pattern {
    /// Renders the code for `context` under `rules`, drawing random
    /// characters from `rng`. See [`Pattern::render_into`].
    pub fn render<R: RandomSource + ?Sized>(
        &self,
        context: &Context<'_>,
        rules: &Rules,
        rng: &mut R,
    ) -> Result<String, RenderError> {
        let mut code = String::with_capacity(rules.max_len.min(64));
        self.render_into(context, rules, rng, &mut code)?;
        Ok(code)
    }

    /// Renders the code into `code`, replacing its contents, so that a caller
    /// minting many codes can reuse one buffer. On error `code` is left empty.
    ///
    /// Every part (literal text and values alike) is transliterated to ASCII,
    /// stripped of characters `rules` does not allow, filtered, then
    /// upper-cased if `rules.uppercase` and the part has no case filter.
    ///
    /// When the code would exceed `rules.max_len`, the non-random text is cut
    /// first, from its end: random characters are what makes a code hard to
    /// guess, so they are kept whole unless they alone exceed `max_len`, in
    /// which case the last of them are cut too. For example `{username}{random:4}`
    /// with `max_len` 8 renders `ANNABELLA` as `ANNAK7QX`.
    ///
    /// Missing values are reported before any randomness is drawn.
    pub fn render_into<R: RandomSource + ?Sized>(
        &self,
        context: &Context<'_>,
        rules: &Rules,
        rng: &mut R,
        code: &mut String,
    ) -> Result<(), RenderError> {
        code.clear();
        for &variable in self.variables() {
            context.resolve(variable)?;
        }

        let random_budget = self.random_chars().min(rules.max_len);
        let mut writer = CodeWriter {
            code,
            allowed: rules.allowed,
            text_left: rules.max_len - random_budget,
            random_left: random_budget,
        };
        let default_case = rules.uppercase.then_some(Case::Upper);
        for segment in &self.segments {
            let placeholder = match segment {
                Segment::Literal(text) => {
                    writer.text(text.chars(), default_case, usize::MAX);
                    continue;
                }
                Segment::Placeholder(placeholder) => placeholder,
            };
            let case = placeholder.case.or(default_case);
            let limit = placeholder.limit.unwrap_or(usize::MAX);
            match context.resolve(placeholder.variable)? {
                Value::Text(text) => writer.text(text.chars(), case, limit),
                Value::Names(first, last) => {
                    // A space between the names, dropped like every space (no rules
                    // allow one), keeps each name's letters out of the other's context:
                    // Μαρία Υφαντή is MARIAYFANTI, not MARIAFFANTI.
                    let between = (first.is_some() && last.is_some()).then_some(" ");
                    let names = first
                        .into_iter()
                        .chain(between)
                        .chain(last)
                        .flat_map(str::chars);
                    writer.text(names, case, limit);
                }
                Value::Discount(discount) => {
                    writer.text(discount.code_digits().chars(), case, limit);
                }
                Value::Random(len) => {
                    // Random characters are upper case unless filtered `lower`,
                    // even under rules that don't upper-case.
                    writer.random(usize::from(len), placeholder.case, rng);
                }
            }
        }

        if !code.bytes().any(|byte| byte.is_ascii_alphanumeric()) {
            code.clear();
            return Err(RenderError::Empty);
        }
        Ok(())
    }
}

/// Appends rendered characters to a code, enforcing the length budgets.
struct CodeWriter<'c> {
    code: &'c mut String,
    allowed: AllowedChars,
    /// Room left for characters that are not random.
    text_left: usize,
    /// Room left for random characters.
    random_left: usize,
}

impl CodeWriter<'_> {
    /// Appends the allowed ASCII spelling of `chars`, at most `limit` characters of it.
    fn text(&mut self, chars: impl Iterator<Item = char>, case: Option<Case>, mut limit: usize) {
        for spelling in translit::spelled(chars) {
            for byte in spelling.bytes() {
                if limit == 0 || self.text_left == 0 {
                    return;
                }
                if self.allowed.contains_byte(byte) {
                    let byte = case.map_or(byte, |case| case.apply(byte));
                    self.code.push(char::from(byte));
                    limit -= 1;
                    self.text_left -= 1;
                }
            }
        }
    }

    fn random<R: RandomSource + ?Sized>(&mut self, len: usize, case: Option<Case>, rng: &mut R) {
        let len = len.min(self.random_left);
        self.random_left -= len;
        push_random(self.code, len, case, rng);
    }
}

/// Appends `len` characters from [`RANDOM_ALPHABET`].
fn push_random<R: RandomSource + ?Sized>(
    code: &mut String,
    len: usize,
    case: Option<Case>,
    rng: &mut R,
) {
    let alphabet = RANDOM_ALPHABET.as_bytes();
    for _ in 0..len {
        let byte = alphabet[rng.fill_index(alphabet.len()) % alphabet.len()];
        let byte = case.map_or(byte, |case| case.apply(byte));
        code.push(char::from(byte));
    }
}

/// Appends `n` random characters to `code` (typically a rendered code that
/// collided with an existing one), cutting `code`'s end to stay within
/// `rules.max_len`; if `n` alone exceeds `max_len`, only `max_len` random
/// characters remain.
///
/// The suffix uses [`RANDOM_ALPHABET`], which every rules allow.
pub fn append_suffix<R: RandomSource + ?Sized>(
    code: &str,
    n: usize,
    rules: &Rules,
    rng: &mut R,
) -> String {
    let n = n.min(rules.max_len);
    let base_len = rules.max_len - n;
    // Cut at a character boundary, in case `code` is not a rendered (ASCII) code.
    let base_end = code
        .char_indices()
        .nth(base_len)
        .map_or(code.len(), |(end, _)| end);
    let mut suffixed = String::with_capacity(base_end + n);
    suffixed.push_str(&code[..base_end]);
    push_random(&mut suffixed, n, None, rng);
    suffixed
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::rules::AllowedChars;

    /// Walks the alphabet in order: deterministic and easy to read in assertions.
    fn counter() -> impl FnMut(usize) -> usize {
        let mut next = 0;
        move |upper| {
            let index = next % upper;
            next += 1;
            index
        }
    }

    fn rules(max_len: usize) -> Rules {
        Rules::new(max_len)
    }

    fn render(pattern: &str, context: &Context<'_>, rules: &Rules) -> Result<String, RenderError> {
        Pattern::parse(pattern)
            .unwrap()
            .render(context, rules, &mut counter())
    }

    fn jose() -> Context<'static> {
        Context {
            username: Some("jose.muller"),
            first_name: Some("José"),
            last_name: Some("Müller"),
            campaign: Some("Summer Sale 2025"),
            discount: Some(Discount::Percent { basis_points: 2000 }),
            social: SocialHandles::new()
                .with(SocialNetwork::Instagram, "@jose_m")
                .with(SocialNetwork::TikTok, "josé.tok"),
        }
    }

    #[test]
    fn renders_every_variable() {
        let context = jose();
        let rules = rules(64);
        for (pattern, code) in [
            ("{username}", "JOSEMULLER"),
            ("{first_name}", "JOSE"),
            ("{last_name}", "MULLER"),
            ("{full_name}", "JOSEMULLER"),
            ("{campaign}", "SUMMERSALE2025"),
            ("{discount}", "20"),
            ("{instagram}", "JOSEM"),
            ("{tiktok}", "JOSETOK"),
            ("{random:4}", "2345"),
        ] {
            assert_eq!(
                render(pattern, &context, &rules).unwrap(),
                code,
                "{pattern}"
            );
        }
    }

    #[test]
    fn literals_are_normalized_like_values() {
        let rules = rules(64);
        assert_eq!(
            render("été-{first_name}!", &jose(), &rules).unwrap(),
            "ETEJOSE"
        );
    }

    #[test]
    fn escaped_braces_are_dropped_unless_allowed() {
        let mut rules = rules(64);
        assert_eq!(render("{{{first_name}}}", &jose(), &rules).unwrap(), "JOSE");
        rules.allowed = AllowedChars::alphanumeric().with_punctuation("{}").unwrap();
        assert_eq!(
            render("{{{first_name}}}", &jose(), &rules).unwrap(),
            "{JOSE}"
        );
    }

    #[test]
    fn allowed_punctuation_is_kept() {
        let mut rules = rules(64);
        rules.allowed = AllowedChars::alphanumeric().with_punctuation("-_").unwrap();
        assert_eq!(
            render("{first_name}-{instagram}.{random:2}", &jose(), &rules).unwrap(),
            "JOSE-JOSE_M23"
        );
    }

    #[test]
    fn uppercase_is_the_default() {
        assert_eq!(
            render("{first_name}{last_name}", &jose(), &rules(64)).unwrap(),
            "JOSEMULLER"
        );
    }

    #[test]
    fn case_filters_override_the_default() {
        let rules = rules(64);
        assert_eq!(
            render("{first_name|lower}{last_name}", &jose(), &rules).unwrap(),
            "joseMULLER"
        );
        // The last case filter wins; `lower` also applies to random letters.
        let pattern = Pattern::parse("{first_name|lower|upper}{random:3|lower}").unwrap();
        let index_of_a = RANDOM_ALPHABET.find('A').unwrap();
        let code = pattern
            .render(&jose(), &rules, &mut |_| index_of_a)
            .unwrap();
        assert_eq!(code, "JOSEaaa");
    }

    #[test]
    fn without_uppercase_rules_case_is_kept() {
        let mut rules = rules(64);
        rules.uppercase = false;
        assert_eq!(
            render("Hi{first_name}{last_name|upper}{random:2}", &jose(), &rules).unwrap(),
            "HiJoseMULLER23"
        );
        assert_eq!(
            render("{first_name|lower}{random:2|lower}", &jose(), &rules).unwrap(),
            "jose23"
        );
    }

    #[test]
    fn trunc_counts_output_characters() {
        let rules = rules(64);
        let context = Context {
            first_name: Some("Æ. Ørsted"),
            ..jose()
        };
        // Æ gives two letters; `.` and the space are dropped before counting.
        assert_eq!(
            render("{first_name|trunc:3}", &context, &rules).unwrap(),
            "AEO"
        );
        assert_eq!(
            render("{first_name|trunc:5|lower|trunc:4}", &context, &rules).unwrap(),
            "aeor"
        );
        assert_eq!(
            render("{full_name|trunc:6}", &jose(), &rules).unwrap(),
            "JOSEMU"
        );
        assert_eq!(render("{discount|trunc:1}", &jose(), &rules).unwrap(), "2");
    }

    #[test]
    fn transliterates_names() {
        let rules = rules(64);
        for (name, code) in [
            ("José", "JOSE"),
            ("Łukasz", "LUKASZ"),
            ("Müller", "MULLER"),
            ("Strauß", "STRAUSS"),
            ("Øyvind", "OYVIND"),
            ("Ærø", "AERO"),
            ("Œuvre", "OEUVRE"),
            ("Ñuño", "NUNO"),
            ("François", "FRANCOIS"),
            ("Šimon Žák Čech", "SIMONZAKCECH"),
            ("Mary-Ann O'Neil", "MARYANNONEIL"),
            ("Анна Li", "ANNALI"),
            ("Γιώργος", "GIORGOS"),
            ("Нұрлан Әлиев", "NURLANALIEV"),
            ("Ἀλέξανδρος", "ALEXANDROS"),
            ("李 Li", "LI"),
        ] {
            let context = Context {
                first_name: Some(name),
                ..jose()
            };
            assert_eq!(
                render("{first_name}", &context, &rules).unwrap(),
                code,
                "{name}"
            );
        }
    }

    #[test]
    fn full_name_uses_whichever_names_exist() {
        let rules = rules(64);
        let first_only = Context {
            last_name: None,
            ..jose()
        };
        assert_eq!(render("{full_name}", &first_only, &rules).unwrap(), "JOSE");
        let last_only = Context {
            first_name: Some("  "),
            ..jose()
        };
        assert_eq!(render("{full_name}", &last_only, &rules).unwrap(), "MULLER");
        let neither = Context {
            first_name: None,
            last_name: None,
            ..jose()
        };
        assert_eq!(
            render("{full_name}", &neither, &rules),
            Err(RenderError::MissingField("full_name"))
        );
        // Each name is spelled on its own: a first name's last letter does not change
        // how the last name's first is spelled.
        let greek = Context {
            first_name: Some("Μαρία"),
            last_name: Some("Υφαντή"),
            ..jose()
        };
        assert_eq!(
            render("{full_name}", &greek, &rules).unwrap(),
            "MARIAYFANTI"
        );
    }

    #[test]
    fn discounts_render_as_digits() {
        let rules = rules(64);
        for (discount, code) in [
            (Discount::Percent { basis_points: 2000 }, "OFF20"),
            (Discount::Percent { basis_points: 1250 }, "OFF125"),
            (
                Discount::Fixed {
                    minor_units: 1000,
                    exponent: 2,
                },
                "OFF10",
            ),
            (
                Discount::Fixed {
                    minor_units: 1050,
                    exponent: 2,
                },
                "OFF1050",
            ),
        ] {
            let context = Context {
                discount: Some(discount),
                ..jose()
            };
            assert_eq!(render("off{discount}", &context, &rules).unwrap(), code);
        }
    }

    #[test]
    fn social_handles_lose_their_at_sign() {
        let rules = rules(64);
        let mut allowing_at = rules;
        allowing_at.allowed = AllowedChars::alphanumeric().with_punctuation("@").unwrap();
        let context = Context {
            social: SocialHandles::new().with(SocialNetwork::Twitch, " @@anna"),
            ..jose()
        };
        assert_eq!(render("{twitch}", &context, &allowing_at).unwrap(), "@ANNA");
        assert_eq!(render("{twitch}", &context, &rules).unwrap(), "ANNA");
    }

    #[test]
    fn missing_social_account() {
        let rules = rules(64);
        assert_eq!(
            render("{first_name}{youtube}", &jose(), &rules),
            Err(RenderError::MissingSocialAccount(SocialNetwork::YouTube))
        );
        let blank = Context {
            social: SocialHandles::new().with(SocialNetwork::YouTube, " @ "),
            ..jose()
        };
        assert_eq!(
            render("{youtube}", &blank, &rules),
            Err(RenderError::MissingSocialAccount(SocialNetwork::YouTube))
        );
        assert_eq!(
            RenderError::MissingSocialAccount(SocialNetwork::YouTube).to_string(),
            "the creator has no youtube account, which the pattern uses"
        );
    }

    #[test]
    fn missing_fields() {
        let rules = rules(64);
        let empty = Context::default();
        for (pattern, field) in [
            ("{username}", "username"),
            ("{first_name}", "first_name"),
            ("{last_name}", "last_name"),
            ("{campaign}", "campaign"),
            ("{discount}", "discount"),
        ] {
            assert_eq!(
                render(pattern, &empty, &rules),
                Err(RenderError::MissingField(field)),
                "{pattern}"
            );
        }
        let blank = Context {
            username: Some(" \t"),
            ..jose()
        };
        assert_eq!(
            render("{username}", &blank, &rules),
            Err(RenderError::MissingField("username"))
        );
        assert_eq!(
            RenderError::MissingField("first_name").to_string(),
            "the creator has no first_name, which the pattern uses"
        );
    }

    #[test]
    fn errors_come_before_randomness_and_leave_the_buffer_empty() {
        let pattern = Pattern::parse("{random:4}{username}").unwrap();
        let mut draws = 0;
        let mut rng = |upper: usize| {
            draws += 1;
            upper - 1
        };
        let mut code = "previous".to_owned();
        let result = pattern.render_into(&Context::default(), &rules(64), &mut rng, &mut code);
        assert_eq!(result, Err(RenderError::MissingField("username")));
        assert_eq!(code, "");
        assert_eq!(draws, 0);
    }

    #[test]
    fn empty_results_are_errors() {
        let rules = rules(64);
        let context = Context {
            first_name: Some("李娜"),
            ..jose()
        };
        assert_eq!(
            render("{first_name}", &context, &rules),
            Err(RenderError::Empty)
        );
        assert_eq!(render("!!!", &context, &rules), Err(RenderError::Empty));
        // Punctuation alone is not a code.
        let mut dashes = rules;
        dashes.allowed = AllowedChars::alphanumeric().with_punctuation("-").unwrap();
        assert_eq!(
            render("-{first_name}-", &context, &dashes),
            Err(RenderError::Empty)
        );
        assert_eq!(
            render("{first_name}", &jose(), &Rules::new(0)),
            Err(RenderError::Empty)
        );
    }

    #[test]
    fn long_codes_cut_text_and_keep_random_characters() {
        let context = Context {
            username: Some("annabella"),
            ..jose()
        };
        assert_eq!(
            render("{username}{random:4}", &context, &rules(8)).unwrap(),
            "ANNA2345"
        );
        // Text after the random part is cut before text before it.
        assert_eq!(
            render("{first_name}{random:4}{last_name}", &jose(), &rules(10)).unwrap(),
            "JOSE2345MU"
        );
        // Random characters alone beyond max_len: only they remain, cut at max_len.
        assert_eq!(
            render("{username}{random:6}", &context, &rules(4)).unwrap(),
            "2345"
        );
        // Short enough: nothing is cut.
        assert_eq!(
            render("{username}{random:4}", &context, &rules(13)).unwrap(),
            "ANNABELLA2345"
        );
    }

    #[test]
    fn random_characters_come_from_the_alphabet() {
        let pattern = Pattern::parse("{random:32}").unwrap();
        let code = pattern
            .render(&Context::default(), &rules(32), &mut counter())
            .unwrap();
        assert_eq!(&code[..31], RANDOM_ALPHABET);
        assert_eq!(&code[31..], "2");
        assert!(RANDOM_ALPHABET.bytes().all(|b| !b"0O1IL".contains(&b)));
        assert_eq!(RANDOM_ALPHABET.len(), 31);
    }

    #[test]
    fn out_of_range_random_indices_do_not_panic() {
        let pattern = Pattern::parse("{random:3}").unwrap();
        let code = pattern
            .render(&Context::default(), &rules(8), &mut |_| usize::MAX)
            .unwrap();
        assert_eq!(code.len(), 3);
        assert!(code.chars().all(|c| RANDOM_ALPHABET.contains(c)));
    }

    #[test]
    fn random_sources_can_be_trait_objects() {
        let pattern = Pattern::parse("{random:2}").unwrap();
        let mut counter = counter();
        let rng: &mut dyn RandomSource = &mut counter;
        assert_eq!(
            pattern.render(&Context::default(), &rules(8), rng).unwrap(),
            "23"
        );
    }

    #[test]
    fn render_into_replaces_the_buffer() {
        let pattern = Pattern::parse("{first_name}").unwrap();
        let mut code = "previous".to_owned();
        pattern
            .render_into(&jose(), &rules(8), &mut counter(), &mut code)
            .unwrap();
        assert_eq!(code, "JOSE");
    }

    #[test]
    fn suffix_fits_within_max_len() {
        let rules = rules(8);
        assert_eq!(append_suffix("ANNA", 2, &rules, &mut counter()), "ANNA23");
        assert_eq!(
            append_suffix("ANNABELL", 2, &rules, &mut counter()),
            "ANNABE23"
        );
        assert_eq!(append_suffix("ANNA", 0, &rules, &mut counter()), "ANNA");
        assert_eq!(
            append_suffix("ANNA", 10, &rules, &mut counter()),
            "23456789"
        );
        assert_eq!(append_suffix("", 3, &rules, &mut counter()), "234");
        // Non-ASCII input is cut at a character boundary.
        assert_eq!(
            append_suffix("ÉÉÉÉÉÉÉÉ", 2, &rules, &mut counter()),
            "ÉÉÉÉÉÉ23"
        );
    }
}
