//! A campaign's roster: creators, their profile snapshot and where they stand.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracking_pattern::SocialNetwork;

use crate::error::Error;
use tracking_server::fields::{check_required_text, check_text};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RosterStatus {
    Added,
    Approved,
    Removed,
}

impl RosterStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RosterStatus::Added => "added",
            RosterStatus::Approved => "approved",
            RosterStatus::Removed => "removed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "added" => Some(RosterStatus::Added),
            "approved" => Some(RosterStatus::Approved),
            "removed" => Some(RosterStatus::Removed),
            _ => None,
        }
    }
}

/// What minting needs to know about a creator. First name, last name and email may be missing
/// here: minting then fails with a reason the brand can act on, and retries once fixed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub username: String,
    /// Handle by network name (`instagram`, `tiktok`, ...).
    pub social_handles: BTreeMap<String, String>,
}

const MAX_FIELD: usize = 200;

impl Profile {
    /// Trims and checks every field; social networks must be ones the pattern engine knows.
    pub fn validate(mut self) -> Result<Profile, Error> {
        for (field, value) in [
            ("profile.first_name", &mut self.first_name),
            ("profile.last_name", &mut self.last_name),
            ("profile.email", &mut self.email),
            ("profile.username", &mut self.username),
        ] {
            *value = value.trim().to_owned();
            check_text(value, MAX_FIELD).map_err(|message| Error::invalid(field, message))?;
        }
        if !self.email.is_empty() && !looks_like_email(&self.email) {
            return Err(Error::invalid("profile.email", "is not an email address"));
        }
        let mut handles = BTreeMap::new();
        for (network, handle) in std::mem::take(&mut self.social_handles) {
            let key = network.trim().to_ascii_lowercase();
            if SocialNetwork::from_name(&key).is_none() {
                let known: Vec<&str> = SocialNetwork::ALL.iter().map(|n| n.as_str()).collect();
                return Err(Error::invalid(
                    &format!("profile.social_handles.{network}"),
                    format!("unknown network; use one of {}", known.join(", ")),
                ));
            }
            let handle = handle.trim().to_owned();
            check_required_text(&handle, MAX_FIELD).map_err(|message| {
                Error::invalid(&format!("profile.social_handles.{key}"), message)
            })?;
            handles.insert(key, handle);
        }
        self.social_handles = handles;
        Ok(self)
    }
}

fn looks_like_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.contains(char::is_whitespace)
        }
        None => false,
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RosterEntry {
    pub brand_id: i64,
    pub campaign_id: i64,
    pub creator_id: i64,
    pub profile: Profile,
    pub status: RosterStatus,
    pub added_at: DateTime<Utc>,
    pub approved_at: Option<DateTime<Utc>>,
    pub removed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl RosterEntry {
    pub fn ensure_on_roster(&self) -> Result<(), Error> {
        if self.status == RosterStatus::Removed {
            return Err(Error::FailedPrecondition(format!(
                "creator {} was removed from campaign {}; add them again first",
                self.creator_id, self.campaign_id
            )));
        }
        Ok(())
    }

    /// An add of a creator this entry (not removed) already holds: the same add again changes
    /// nothing; a different one (another profile, or added where the entry is approved) is
    /// ALREADY_EXISTS.
    pub fn check_add_again(&self, profile: &Profile, approved: bool) -> Result<(), Error> {
        if self.profile == *profile && (self.status == RosterStatus::Approved || !approved) {
            return Ok(());
        }
        Err(Error::AlreadyExists(format!(
            "creator {} is already on campaign {}'s roster; use UpdateCreatorProfile or ApproveCreator",
            self.creator_id, self.campaign_id
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_checks_profiles() {
        let profile = Profile {
            first_name: "  José ".into(),
            email: "jose@example.com".into(),
            social_handles: [("Instagram".to_owned(), " @jose ".to_owned())].into(),
            ..Profile::default()
        }
        .validate();
        assert!(profile.as_ref().is_ok_and(|p| p.first_name == "José"
            && p.social_handles.get("instagram").map(String::as_str) == Some("@jose")));

        let bad_network = Profile {
            social_handles: [("myspace".to_owned(), "x".to_owned())].into(),
            ..Profile::default()
        }
        .validate();
        assert!(
            matches!(bad_network, Err(Error::InvalidArgument { field, .. }) if field == "profile.social_handles.myspace")
        );

        let bad_email = Profile {
            email: "not-an-email".into(),
            ..Profile::default()
        }
        .validate();
        assert!(
            matches!(bad_email, Err(Error::InvalidArgument { field, .. }) if field == "profile.email")
        );
    }
}
