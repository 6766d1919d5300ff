//! Amazon Ads (Amazon Attribution) rules: which ids a creator's tag carries, and which days a
//! report import covers.

use chrono::{Duration, NaiveDate};

use super::discount::validate_batch;
use crate::error::Error;

/// Amazon revises a day's attributed figures for this long (its attribution window is 14 days):
/// the importer takes these days again every round.
pub const REVISION_DAYS: i64 = 14;

/// Most days one import covers.
pub const MAX_REPORT_DAYS: i64 = 90;

/// The ids a creator's tag carries, as they come back in the report.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TagIds {
    pub campaign_id: String,
    pub ad_group_id: String,
    pub creative_id: String,
}

impl TagIds {
    /// The ids of a creator's tag in a campaign: the campaign, the creator as the ad group, and
    /// both as the creative, which makes the creative unique in the integration (campaign ids are
    /// unique per brand) and readable in Amazon's console.
    pub fn of_creator(subject: TagSubject) -> TagIds {
        let TagSubject {
            campaign_id,
            creator_id,
        } = subject;
        TagIds {
            campaign_id: format!("campaign-{campaign_id}"),
            ad_group_id: format!("creator-{creator_id}"),
            creative_id: format!("campaign-{campaign_id}-creator-{creator_id}"),
        }
    }
}

/// A creator in a campaign, whose tag is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TagSubject {
    pub campaign_id: i64,
    pub creator_id: i64,
}

/// Checks a tag request's creators: 1..=500, positive ids (`field[i].campaign_id`, ...).
pub fn validate_subjects(field: &str, subjects: &[TagSubject]) -> Result<(), Error> {
    validate_batch(field, subjects.len())?;
    for (i, subject) in subjects.iter().enumerate() {
        if subject.campaign_id <= 0 {
            return Err(Error::invalid(
                &format!("{field}[{i}].campaign_id"),
                "must be a positive id",
            ));
        }
        if subject.creator_id <= 0 {
            return Err(Error::invalid(
                &format!("{field}[{i}].creator_id"),
                "must be a positive id",
            ));
        }
    }
    Ok(())
}

/// A requested import's days (`YYYY-MM-DD`, both inclusive): in order, at most
/// [`MAX_REPORT_DAYS`], the last not after `today`.
pub fn report_range(
    start: &str,
    end: &str,
    today: NaiveDate,
) -> Result<(NaiveDate, NaiveDate), Error> {
    let day = |field: &str, text: &str| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|_| Error::invalid(field, "must be a day, YYYY-MM-DD"))
    };
    let (start, end) = (day("start_date", start)?, day("end_date", end)?);
    if end > today {
        return Err(Error::invalid("end_date", "must not be after today (UTC)"));
    }
    if start > end {
        return Err(Error::invalid("start_date", "must not be after end_date"));
    }
    if (end - start).num_days() >= MAX_REPORT_DAYS {
        return Err(Error::invalid(
            "start_date",
            format!("at most {MAX_REPORT_DAYS} days up to end_date"),
        ));
    }
    Ok((start, end))
}

/// The days the importer takes on `today` (UTC): the last [`REVISION_DAYS`] (which Amazon may
/// still revise), reaching back to the day after the last import when that is older (an importer
/// that was stopped), at most [`MAX_REPORT_DAYS`].
///
/// Report days are the advertiser profile's calendar days, which may be a day behind UTC's (west
/// of UTC): the window reaches one day further back so that the oldest day the profile's Amazon
/// still revises is always taken. A day of the profile ahead of UTC's today (east of UTC) is
/// taken from the next UTC day on, while Amazon still revises it.
pub fn next_import(
    today: NaiveDate,
    imported_through: Option<NaiveDate>,
) -> (NaiveDate, NaiveDate) {
    let recent = today - Duration::days(REVISION_DAYS);
    let start = imported_through
        .map(|through| through + Duration::days(1))
        .filter(|next| *next < recent)
        .unwrap_or(recent)
        .max(today - Duration::days(MAX_REPORT_DAYS - 1));
    (start, today)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap_or_default()
    }

    #[test]
    fn a_creators_tag_ids_name_campaign_and_creator() {
        let ids = TagIds::of_creator(TagSubject {
            campaign_id: 7,
            creator_id: 42,
        });
        assert_eq!(ids.campaign_id, "campaign-7");
        assert_eq!(ids.ad_group_id, "creator-42");
        assert_eq!(ids.creative_id, "campaign-7-creator-42");
    }

    #[test]
    fn subjects_are_checked() {
        let ok = TagSubject {
            campaign_id: 1,
            creator_id: 2,
        };
        assert!(validate_subjects("tags", &[ok]).is_ok());
        let message = |subjects: &[TagSubject]| {
            validate_subjects("tags", subjects)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(message(&[]).starts_with("tags:"));
        let bad = TagSubject {
            creator_id: -1,
            ..ok
        };
        assert!(message(&[ok, bad]).starts_with("tags[1].creator_id:"));
    }

    #[test]
    fn report_ranges_are_checked() {
        let today = day("2025-03-20");
        assert_eq!(
            report_range("2025-03-01", "2025-03-20", today).ok(),
            Some((day("2025-03-01"), day("2025-03-20")))
        );
        let field = |start: &str, end: &str| {
            report_range(start, end, today)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(field("2025-03-01", "2025-03-21").starts_with("end_date:"));
        assert!(field("2025-03-05", "2025-03-04").starts_with("start_date:"));
        assert!(field("03/01/2025", "2025-03-04").starts_with("start_date:"));
        assert!(field("2024-12-20", "2025-03-20").starts_with("start_date:"));
        assert!(report_range("2024-12-21", "2025-03-20", today).is_ok());
    }

    #[test]
    fn the_importer_takes_the_revision_window_and_what_it_missed() {
        let today = day("2025-03-20");
        // 2025-03-06 is still revised where the profile's calendar is a day behind UTC's.
        assert_eq!(next_import(today, None), (day("2025-03-06"), today));
        assert_eq!(
            next_import(today, Some(day("2025-03-20"))),
            (day("2025-03-06"), today)
        );
        assert_eq!(
            next_import(today, Some(day("2025-02-28"))),
            (day("2025-03-01"), today)
        );
        assert_eq!(
            next_import(today, Some(day("2024-01-01"))),
            (day("2024-12-21"), today)
        );
    }
}
