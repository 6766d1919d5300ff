//! Client text every service checks the same way before keeping it.

/// The longest client idempotency key (`request_id`), in characters.
pub const MAX_REQUEST_ID: usize = 100;

/// Whether `value` is client text a service may keep: at most `max` characters (not bytes), and
/// no control characters (PostgreSQL keeps no NUL, and none belongs in a name, an id or a
/// header). `Err` holds what the client reads after the field's name.
pub fn check_text(value: &str, max: usize) -> Result<(), String> {
    if value.chars().count() > max || value.chars().any(char::is_control) {
        Err(format!("at most {max} characters, no control characters"))
    } else {
        Ok(())
    }
}

/// [`check_text`] for text that must not be empty either.
pub fn check_required_text(value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() || check_text(value, max).is_err() {
        Err(format!(
            "must be 1..={max} characters, no control characters"
        ))
    } else {
        Ok(())
    }
}

/// An optional client idempotency key (`None` when `value` is empty), with the digest of the
/// `request` it came with, so that the same key with a different request is told apart.
pub fn request_key(
    value: &str,
    request: &impl prost::Message,
) -> Result<Option<tracking_db::request_keys::RequestKey>, String> {
    check_text(value, MAX_REQUEST_ID)?;
    Ok((!value.is_empty())
        .then(|| tracking_db::request_keys::RequestKey::new(value, &request.encode_to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_counted_in_characters_and_keeps_no_control_characters() {
        assert_eq!(check_text(&"键".repeat(100), 100), Ok(()));
        assert!(check_text(&"a".repeat(101), 100).is_err());
        assert!(check_text("a\0b", 100).is_err());
        assert!(check_text("a\nb", 100).is_err());
        assert!(check_required_text("", 100).is_err());
        assert_eq!(check_required_text("a", 100), Ok(()));
    }

    #[test]
    fn a_request_key_tells_a_retry_from_another_request() {
        let request = |seconds| prost_types::Duration { seconds, nanos: 0 };
        assert_eq!(request_key("", &request(1)), Ok(None));
        assert!(request_key("r\u{7f}", &request(1)).is_err());
        let first = request_key("r-1", &request(1));
        assert!(first.as_ref().is_ok_and(Option::is_some));
        assert_eq!(first, request_key("r-1", &request(1)));
        assert_ne!(first, request_key("r-1", &request(2)));
        assert_eq!(
            first.map(|key| key.map(|key| key.id)),
            Ok(Some("r-1".to_owned()))
        );
    }
}
