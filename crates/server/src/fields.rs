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

/// An optional client idempotency key: `None` when empty.
pub fn request_id(value: &str) -> Result<Option<&str>, String> {
    check_text(value, MAX_REQUEST_ID)?;
    Ok((!value.is_empty()).then_some(value))
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
        assert_eq!(request_id(""), Ok(None));
        assert_eq!(request_id("r-1"), Ok(Some("r-1")));
        assert!(request_id("r\u{7f}").is_err());
    }
}
