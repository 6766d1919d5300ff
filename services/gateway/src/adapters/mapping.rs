//! Mapping helpers the store adapters share: the external ref carried in a store object's name
//! (so a retried push is recognised).

/// Stores other than the sandbox have no field for our external ref, so it rides at the end of
/// the discount's name: `Summer 20 / mia [code-17]`. Whoever holds a taken code is then known:
/// the same ref is our own earlier push (a retry), another is someone else's code. The title is
/// shortened to keep the whole within `max` characters.
pub fn marked_title(title: &str, external_ref: &str, max: usize) -> String {
    let marker = format!(" [{external_ref}]");
    let room = max.saturating_sub(marker.chars().count());
    let title: String = title.chars().take(room).collect();
    format!("{}{marker}", title.trim_end())
}

/// Whether `name` carries the ref `external_ref` (see [`marked_title`]).
pub fn has_marker(name: &str, external_ref: &str) -> bool {
    name.trim_end().ends_with(&format!("[{external_ref}]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_fit_and_match() {
        let title = marked_title("Summer 20 / mia", "code-17", 255);
        assert_eq!(title, "Summer 20 / mia [code-17]");
        assert!(has_marker(&title, "code-17"));
        assert!(!has_marker(&title, "code-1"));
        let long = marked_title(&"x".repeat(300), "r", 255);
        assert_eq!(long.chars().count(), 255);
        assert!(has_marker(&long, "r"));
    }
}
