//! Social networks a pattern can draw a handle from, and a creator's handles.

use std::fmt;
use std::str::FromStr;

/// A social network whose handle can appear in a code, as `{instagram}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SocialNetwork {
    Instagram,
    TikTok,
    YouTube,
    Twitter,
    Facebook,
    Pinterest,
    Twitch,
    Snapchat,
}

impl SocialNetwork {
    /// Every network, in declaration order.
    pub const ALL: [SocialNetwork; 8] = [
        SocialNetwork::Instagram,
        SocialNetwork::TikTok,
        SocialNetwork::YouTube,
        SocialNetwork::Twitter,
        SocialNetwork::Facebook,
        SocialNetwork::Pinterest,
        SocialNetwork::Twitch,
        SocialNetwork::Snapchat,
    ];

    /// The name used in patterns and in [`SocialNetwork::from_name`]: `instagram`, `tiktok`…
    pub const fn as_str(self) -> &'static str {
        match self {
            SocialNetwork::Instagram => "instagram",
            SocialNetwork::TikTok => "tiktok",
            SocialNetwork::YouTube => "youtube",
            SocialNetwork::Twitter => "twitter",
            SocialNetwork::Facebook => "facebook",
            SocialNetwork::Pinterest => "pinterest",
            SocialNetwork::Twitch => "twitch",
            SocialNetwork::Snapchat => "snapchat",
        }
    }

    /// The network named exactly `name` (lowercase, as in patterns).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|network| network.as_str() == name)
    }

    /// Position in [`SocialNetwork::ALL`], used to index [`SocialHandles`].
    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for SocialNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name given to [`SocialNetwork`]'s `FromStr` is not a known network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown social network `{0}`")]
pub struct UnknownSocialNetwork(pub String);

impl FromStr for SocialNetwork {
    type Err = UnknownSocialNetwork;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::from_name(name).ok_or_else(|| UnknownSocialNetwork(name.to_owned()))
    }
}

/// A creator's handle on each network, if any.
///
/// A fixed array rather than a map: there are eight networks, and lookups sit
/// on the rendering hot path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocialHandles<'a>([Option<&'a str>; SocialNetwork::ALL.len()]);

impl<'a> SocialHandles<'a> {
    /// No handles at all.
    pub const fn new() -> Self {
        Self([None; SocialNetwork::ALL.len()])
    }

    /// The handle on `network`, as stored (a leading `@` is removed when rendering).
    pub const fn get(&self, network: SocialNetwork) -> Option<&'a str> {
        self.0[network.index()]
    }

    /// Records `handle` as the creator's handle on `network`, replacing any previous one.
    pub const fn set(&mut self, network: SocialNetwork, handle: &'a str) {
        self.0[network.index()] = Some(handle);
    }

    /// Builder form of [`SocialHandles::set`].
    #[must_use]
    pub const fn with(mut self, network: SocialNetwork, handle: &'a str) -> Self {
        self.set(network, handle);
        self
    }
}

impl<'a> FromIterator<(SocialNetwork, &'a str)> for SocialHandles<'a> {
    fn from_iter<I: IntoIterator<Item = (SocialNetwork, &'a str)>>(handles: I) -> Self {
        let mut all = Self::new();
        for (network, handle) in handles {
            all.set(network, handle);
        }
        all
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for network in SocialNetwork::ALL {
            assert_eq!(SocialNetwork::from_name(network.as_str()), Some(network));
            assert_eq!(network.as_str().parse::<SocialNetwork>(), Ok(network));
            assert_eq!(network.to_string(), network.as_str());
        }
    }

    #[test]
    fn index_matches_position_in_all() {
        for (position, network) in SocialNetwork::ALL.into_iter().enumerate() {
            assert_eq!(network.index(), position);
        }
    }

    #[test]
    fn unknown_names_are_rejected() {
        assert_eq!(SocialNetwork::from_name("myspace"), None);
        // Names are exact, as in patterns.
        assert_eq!(SocialNetwork::from_name("Instagram"), None);
        let error = "myspace".parse::<SocialNetwork>().unwrap_err();
        assert_eq!(error, UnknownSocialNetwork("myspace".to_owned()));
        assert_eq!(error.to_string(), "unknown social network `myspace`");
    }

    #[test]
    fn handles_are_stored_per_network() {
        let mut handles = SocialHandles::new().with(SocialNetwork::TikTok, "anna");
        handles.set(SocialNetwork::Twitch, "anna_live");
        handles.set(SocialNetwork::TikTok, "anna.b");
        assert_eq!(handles.get(SocialNetwork::TikTok), Some("anna.b"));
        assert_eq!(handles.get(SocialNetwork::Twitch), Some("anna_live"));
        assert_eq!(handles.get(SocialNetwork::Instagram), None);

        let collected: SocialHandles<'_> =
            [(SocialNetwork::YouTube, "annab")].into_iter().collect();
        assert_eq!(
            collected,
            SocialHandles::new().with(SocialNetwork::YouTube, "annab")
        );
    }
}
