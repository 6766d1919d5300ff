//! Turning a plan's pattern and a creator's profile into a code the store accepts.

use tracking_api::gateway::v1::Capabilities;
use tracking_pattern::{
    AllowedChars, Context, Pattern, RandomSource, RenderError, Rules, SocialHandles, SocialNetwork,
    append_suffix,
};

use tracking_api::common::v1::currency_exponent;

use super::{Discount, Failure, Plan, Profile};

/// How many suffix rounds a code gets before minting gives up (plans refuse a pattern that would
/// give every creator the same code, so this is far from happening).
pub const MAX_SUFFIX_ROUNDS: usize = 12;

/// The store's rules for codes, from its capabilities.
pub fn rules_for(caps: &Capabilities) -> Result<Rules, String> {
    let allowed = AllowedChars::alphanumeric()
        .with_punctuation(&caps.code_punctuation)
        .map_err(|bad| format!("store punctuation {:?} is not usable in codes", bad.0))?;
    let max_len = usize::try_from(caps.max_code_length)
        .ok()
        .filter(|len| *len > 0)
        .ok_or_else(|| "the provider has no discount codes".to_owned())?;
    Ok(Rules {
        max_len,
        allowed,
        uppercase: true,
    })
}

/// First name, last name and email are needed for any code (stores and reports use them).
pub fn check_profile(profile: &Profile) -> Result<(), Failure> {
    let missing: Vec<String> = [
        ("first_name", &profile.first_name),
        ("last_name", &profile.last_name),
        ("email", &profile.email),
    ]
    .iter()
    .filter(|(_, value)| value.trim().is_empty())
    .map(|(name, _)| (*name).to_owned())
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Failure::MissingProfileField(missing))
    }
}

/// The networks the pattern uses that the creator has not linked.
fn missing_networks(pattern: &Pattern, profile: &Profile) -> Vec<String> {
    pattern
        .social_networks()
        .iter()
        .filter(|network| {
            profile
                .social_handles
                .get(network.as_str())
                .is_none_or(|handle| handle.trim().is_empty())
        })
        .map(|network| network.as_str().to_owned())
        .collect()
}

fn discount(plan: &Plan) -> Option<tracking_pattern::Discount> {
    match plan.terms.discount.as_ref()? {
        Discount::PercentBps(bps) => Some(tracking_pattern::Discount::Percent {
            basis_points: u32::try_from(*bps).ok()?,
        }),
        Discount::Fixed(money) => Some(tracking_pattern::Discount::Fixed {
            minor_units: u64::try_from(money.amount_minor).ok()?,
            exponent: currency_exponent(&money.currency),
        }),
    }
}

fn present(value: &str) -> Option<&str> {
    (!value.trim().is_empty()).then_some(value)
}

/// Renders the creator's base code (before any collision suffix).
pub fn render_code(
    pattern: &Pattern,
    plan: &Plan,
    campaign_name: &str,
    profile: &Profile,
    rules: &Rules,
    rng: &mut impl RandomSource,
) -> Result<String, Failure> {
    check_profile(profile)?;
    let missing = missing_networks(pattern, profile);
    if !missing.is_empty() {
        return Err(Failure::MissingSocialAccount(missing));
    }
    let mut social = SocialHandles::new();
    for network in SocialNetwork::ALL {
        if let Some(handle) = profile.social_handles.get(network.as_str()) {
            social.set(network, handle);
        }
    }
    let context = Context {
        username: present(&profile.username),
        first_name: present(&profile.first_name),
        last_name: present(&profile.last_name),
        campaign: present(campaign_name),
        discount: discount(plan),
        social,
    };
    pattern
        .render(&context, rules, rng)
        .map_err(|err| match err {
            RenderError::MissingSocialAccount(network) => {
                Failure::MissingSocialAccount(vec![network.as_str().to_owned()])
            }
            // The plan's and the campaign's values: no profile update would bring them.
            RenderError::MissingField(field @ "discount") => Failure::pattern(format!(
                "the pattern uses {{{field}}}, and the plan gives no discount"
            )),
            RenderError::MissingField(field @ "campaign") => Failure::pattern(format!(
                "the pattern uses {{{field}}}, and the campaign's name has no letter or digit"
            )),
            RenderError::MissingField(field) => {
                Failure::MissingProfileField(vec![field.to_owned()])
            }
            RenderError::Empty => {
                // Which of the creator's own values give nothing a code can carry (a name in a
                // script the pattern engine does not spell, Han or Arabic, say): named, for the
                // brand to act on.
                let unusable: Vec<&str> = pattern
                    .variables()
                    .iter()
                    .filter(|variable| variable.is_per_creator())
                    .filter(|variable| {
                        Pattern::parse(&format!("{{{}}}", variable.name())).is_ok_and(|alone| {
                            alone.render(&context, rules, rng) == Err(RenderError::Empty)
                        })
                    })
                    .map(|variable| variable.name())
                    .collect();
                if unusable.is_empty() {
                    Failure::pattern(err.to_string())
                } else {
                    Failure::Pattern {
                        why: format!(
                            "the code would be empty: the creator's {} gives no letter or digit a code can carry; give a Latin spelling in the profile, or change the pattern",
                            unusable.join(", ")
                        ),
                        fields: unusable.iter().map(|name| (*name).to_owned()).collect(),
                    }
                }
            }
        })
}

/// The code to try after `round` collisions: 1 random character for the first two rounds, then
/// 2, then 3, … appended to the base.
pub fn suffixed(base: &str, round: usize, rules: &Rules, rng: &mut impl RandomSource) -> String {
    append_suffix(base, 1 + (round.saturating_sub(1)) / 2, rules, rng)
}

/// Normalizes and checks a code a brand typed, against the store's rules.
pub fn normalize_manual(code: &str, rules: &Rules) -> Result<String, String> {
    let code = code.trim().to_ascii_uppercase();
    if code.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if code.chars().count() > rules.max_len {
        return Err(format!(
            "at most {} characters for this store",
            rules.max_len
        ));
    }
    if let Some(bad) = code.chars().find(|c| !rules.allowed.contains(*c)) {
        return Err(format!("{bad:?} is not allowed in this store's codes"));
    }
    // As for a rendered code (`Rules::accepts`): punctuation alone is not a code.
    if !code.bytes().any(|b| b.is_ascii_alphanumeric()) {
        return Err("needs a letter or a digit".to_owned());
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{PlanTerms, Trigger};
    use tracking_api::common::v1::Provider;

    fn plan(pattern: &str) -> Plan {
        Plan {
            brand_id: 1,
            id: 1,
            name: "p".into(),
            integration_id: 1,
            provider: Provider::Sandbox,
            terms: PlanTerms {
                discount: Some(Discount::PercentBps(2000)),
                code_pattern: pattern.into(),
                ..PlanTerms::default()
            },
            trigger: Trigger::OnApproval,
            archived: false,
            links_key: String::new(),
        }
    }

    fn profile() -> Profile {
        Profile {
            first_name: "José".into(),
            last_name: "Núñez".into(),
            email: "jose@example.com".into(),
            username: "josen".into(),
            social_handles: [("instagram".to_owned(), "@jose.n".to_owned())].into(),
        }
    }

    fn rules() -> Rules {
        Rules {
            max_len: 20,
            allowed: AllowedChars::alphanumeric(),
            uppercase: true,
        }
    }

    fn rng() -> impl RandomSource {
        let mut n = 0usize;
        move |upper: usize| {
            n += 1;
            n % upper
        }
    }

    #[test]
    fn renders_and_reports_what_is_missing() {
        let p = plan("{first_name}{discount}");
        let pattern = Pattern::parse(&p.terms.code_pattern).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            render_code(&pattern, &p, "Summer", &profile(), &rules(), &mut rng()),
            Ok("JOSE20".to_owned())
        );
        let incomplete = Profile {
            last_name: String::new(),
            email: " ".into(),
            ..profile()
        };
        assert_eq!(
            render_code(&pattern, &p, "Summer", &incomplete, &rules(), &mut rng()),
            Err(Failure::MissingProfileField(vec![
                "last_name".into(),
                "email".into()
            ]))
        );
        // What the plan or the campaign lacks is not the profile's to fix.
        let mut tracking_only = plan("{username}{discount}");
        tracking_only.terms.discount = None;
        let with_discount =
            Pattern::parse(&tracking_only.terms.code_pattern).unwrap_or_else(|e| panic!("{e}"));
        let rendered = render_code(
            &with_discount,
            &tracking_only,
            "Summer",
            &profile(),
            &rules(),
            &mut rng(),
        );
        assert!(
            matches!(&rendered, Err(Failure::Pattern { why: m, .. }) if m.contains("{discount}")),
            "{rendered:?}"
        );
        let named = Pattern::parse("{campaign}{username}").unwrap_or_else(|e| panic!("{e}"));
        let rendered = render_code(&named, &p, " ", &profile(), &rules(), &mut rng());
        assert!(
            matches!(&rendered, Err(Failure::Pattern { why: m, .. }) if m.contains("{campaign}")),
            "{rendered:?}"
        );
        // A name in a script the engine does not spell gives nothing: the failure names it.
        let han = Profile {
            first_name: "李".into(),
            ..profile()
        };
        let alone = Pattern::parse("{first_name}").unwrap_or_else(|e| panic!("{e}"));
        let rendered = render_code(&alone, &p, "Summer", &han, &rules(), &mut rng());
        assert!(
            matches!(&rendered, Err(Failure::Pattern { why: m, .. }) if m.contains("creator's first_name gives no letter")),
            "{rendered:?}"
        );
        // The creator's own value: a profile update may fix it, and then retries it.
        let failure = rendered.err().unwrap_or_else(|| panic!("a failure"));
        assert_eq!(failure.fields(), vec!["first_name".to_owned()]);
        assert!(failure.fixed_by_profile());
        // The plan's or the campaign's: no profile update fixes it.
        let rendered = render_code(&named, &p, " ", &profile(), &rules(), &mut rng());
        assert!(rendered.is_err_and(|failure| !failure.fixed_by_profile()));
        let tiktok = Pattern::parse("{tiktok}").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            render_code(&tiktok, &p, "Summer", &profile(), &rules(), &mut rng()),
            Err(Failure::MissingSocialAccount(vec!["tiktok".into()]))
        );
    }

    #[test]
    fn suffixes_grow_and_manual_codes_follow_the_rules() {
        let mut r = rng();
        assert_eq!(suffixed("JOSE20", 1, &rules(), &mut r).len(), 7);
        assert_eq!(suffixed("JOSE20", 3, &rules(), &mut r).len(), 8);
        assert_eq!(
            normalize_manual(" vip-10 ", &rules()),
            Err("'-' is not allowed in this store's codes".into())
        );
        assert_eq!(normalize_manual("vip10", &rules()), Ok("VIP10".into()));
        assert!(normalize_manual("", &rules()).is_err());
        let mut dashes = rules();
        dashes.allowed = dashes
            .allowed
            .with_punctuation("-_")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(normalize_manual("vip-10", &dashes), Ok("VIP-10".into()));
        assert_eq!(
            normalize_manual("-_-", &dashes),
            Err("needs a letter or a digit".into()),
            "punctuation alone is not a code"
        );
    }
}
