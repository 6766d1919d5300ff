//! Discount-code patterns: a small template language that turns a creator's
//! profile into a code a shop accepts.
//!
//! # The pattern language
//!
//! A pattern is literal text with placeholders in braces: `{variable}`, or
//! `{variable|filter}` with one or more filters applied left to right.
//!
//! - `{first_name}{discount}` → `JOSE20` for José on a 20 % plan
//! - `{first_name|trunc:3}-{random:4}` → `LUK-7KQ2` for Łukasz (with `-` allowed)
//! - `{instagram|lower}` → `anna_b` for `@anna_b` (with `_` allowed)
//! - `{campaign|trunc:6}{username|trunc:4}` → `SUMMERANNA`
//! - `WELCOME{random:8}` → `WELCOMEX4ND7QPA`
//!
//! ## Variables
//!
//! | Variable | Value |
//! |---|---|
//! | `username` | the creator's username |
//! | `first_name`, `last_name` | the creator's names |
//! | `full_name` | first and last name together (either may be missing, not both) |
//! | `campaign` | the campaign's name |
//! | `discount` | the plan's discount as digits: 20 % → `20`, 12.5 % → `125`, 10.00 → `10`, 10.50 → `1050` (see [`Discount`]) |
//! | `instagram`, `tiktok`, `youtube`, `twitter`, `facebook`, `pinterest`, `twitch`, `snapchat` | the creator's handle on that network, without a leading `@` |
//! | `random:N` | N random characters (1 to 32) from [`RANDOM_ALPHABET`], which leaves out the look-alikes 0, O, 1, I and L |
//!
//! ## Filters
//!
//! | Filter | Effect |
//! |---|---|
//! | `upper` | upper case |
//! | `lower` | lower case, even when the shop's rules upper-case by default |
//! | `trunc:N` | at most N characters (1 to 255), counted after transliteration and removal of forbidden characters; not allowed on `random:N` (use a smaller N) |
//!
//! A chain such as `{first_name|trunc:3|upper}` applies each filter in turn.
//!
//! ## Escapes and limits
//!
//! `{{` and `}}` stand for literal braces. Names are exact: lower case, no
//! spaces. A pattern has at most 200 characters and cannot be empty; it may
//! be literal text only (`SUMMER25`), though [`Pattern::check_keyspace`]
//! rejects such a pattern for more than one creator.
//!
//! Parse errors ([`PatternError`]) name the problem and its byte position:
//! ``unknown variable `foo` at byte 4``. A parsed [`Pattern`] displays as its
//! canonical source, which parses back to an equal pattern.
//!
//! # Rendering
//!
//! [`Pattern::render`] produces the code for one creator ([`Context`]) under a
//! shop's [`Rules`]. Every part of the code, literal text included:
//!
//! 1. is transliterated to ASCII (`José` → `Jose`, `Łukasz` → `Lukasz`,
//!    `ß` → `ss`, `Æsa` → `Aesa`, `ÆSA` → `AESA`; Cyrillic by ICAO Doc
//!    9303's general table, `Юлия` → `Iuliia`; Greek by ELOT 743,
//!    `Γιώργος` → `Giorgos`);
//!    characters with no ASCII spelling, such as other scripts and emoji,
//!    are dropped;
//! 2. loses the characters the rules forbid (anything but ASCII letters,
//!    digits and the rules' punctuation, so spaces always go);
//! 3. goes through its filters;
//! 4. is upper-cased when the rules ask for it, unless it has a case filter.
//!
//! A code longer than `max_len` is cut: text first, from its end, keeping the
//! random characters whole whenever they fit. A code without any letter or
//! digit is an error, as is a pattern using a value the creator lacks.
//!
//! Randomness comes from the caller through [`RandomSource`], which should be
//! a cryptographically secure generator: the crate itself does no I/O.
//! [`append_suffix`] extends a code that collided with an existing one.
//!
//! ```
//! use tracking_pattern::{Context, Discount, Pattern, Rules, SocialHandles, SocialNetwork};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pattern: Pattern = "{first_name|trunc:4}{discount}-{random:3}".parse()?;
//! let creator = Context {
//!     first_name: Some("Łukasz"),
//!     discount: Some(Discount::Percent { basis_points: 1500 }),
//!     social: SocialHandles::new().with(SocialNetwork::TikTok, "@lukasz"),
//!     ..Context::default()
//! };
//! let rules = Rules {
//!     allowed: tracking_pattern::AllowedChars::alphanumeric().with_punctuation("-")?,
//!     ..Rules::new(20)
//! };
//! // For illustration only: production code plugs in a CSPRNG here.
//! let mut rng = |upper: usize| 7 % upper;
//! assert_eq!(pattern.render(&creator, &rules, &mut rng)?, "LUKA15-999");
//! pattern.check_keyspace(10_000)?;
//! # Ok(())
//! # }
//! ```

mod discount;
mod keyspace;
mod parse;
mod pattern;
mod render;
mod rules;
mod social;
mod translit;

pub use discount::Discount;
pub use keyspace::KEYSPACE_FACTOR;
pub use parse::{MAX_PATTERN_CHARS, MAX_RANDOM_CHARS, MAX_TRUNC, PatternError};
pub use pattern::{Pattern, Variable};
pub use render::{Context, RANDOM_ALPHABET, RandomSource, RenderError, append_suffix};
pub use rules::{AllowedChars, InvalidPunctuation, Rules};
pub use social::{SocialHandles, SocialNetwork, UnknownSocialNetwork};
