//! Transliteration of names and handles to ASCII.
//!
//! Shops accept ASCII codes, while creators are called José, Łukasz or
//! Müller. Each character maps to a short ASCII spelling (`é` → `e`,
//! `ß` → `ss`, `Æ` → `AE`), keeping its case so that `lower` and unfiltered
//! parts under non-upper-case rules read naturally. The mapping is per
//! character and language-neutral: `ü` is `u`, not the German `ue`.
//!
//! Covered: ASCII, Latin-1 Supplement, Latin Extended-A, and a few common
//! letters beyond (Romanian comma-below letters, Azerbaijani schwa,
//! Vietnamese horned letters, capital sharp s) and Unicode dashes.
//! Everything else (other scripts, emoji, combining accents) maps to nothing
//! and is dropped; decomposed text such as `e` + U+0301 therefore keeps its
//! base letter.

/// Every ASCII character, so that ASCII input can be returned as a
/// `&'static str` slice without allocating.
const ASCII: &str = match std::str::from_utf8(&ASCII_BYTES) {
    Ok(ascii) => ascii,
    Err(_) => panic!("every byte below 128 is ASCII"),
};

const ASCII_BYTES: [u8; 128] = {
    let mut bytes = [0_u8; 128];
    let mut byte = 0;
    while byte < bytes.len() {
        bytes[byte] = byte as u8;
        byte += 1;
    }
    bytes
};

/// The first and last code points of [`LATIN`].
const LATIN_START: u32 = 0xA0;
const LATIN_END: u32 = 0x17F;

/// U+00A0 to U+017F: Latin-1 Supplement and Latin Extended-A, in rows of 16.
#[rustfmt::skip]
const LATIN: [&str; (LATIN_END - LATIN_START + 1) as usize] = [
    // U+00A0: no-break space and symbols; keep only ordinal indicators and superscript digits.
    "", "", "", "", "", "", "", "", "", "", "a", "", "", "", "", "",
    // U+00B0
    "", "", "2", "3", "", "", "", "", "", "1", "o", "", "", "", "", "",
    // U+00C0: À Á Â Ã Ä Å Æ Ç È É Ê Ë Ì Í Î Ï
    "A", "A", "A", "A", "A", "A", "AE", "C", "E", "E", "E", "E", "I", "I", "I", "I",
    // U+00D0: Ð Ñ Ò Ó Ô Õ Ö × Ø Ù Ú Û Ü Ý Þ ß
    "D", "N", "O", "O", "O", "O", "O", "", "O", "U", "U", "U", "U", "Y", "TH", "ss",
    // U+00E0: à á â ã ä å æ ç è é ê ë ì í î ï
    "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i",
    // U+00F0: ð ñ ò ó ô õ ö ÷ ø ù ú û ü ý þ ÿ
    "d", "n", "o", "o", "o", "o", "o", "", "o", "u", "u", "u", "u", "y", "th", "y",
    // U+0100: Ā ā Ă ă Ą ą Ć ć Ĉ ĉ Ċ ċ Č č Ď ď
    "A", "a", "A", "a", "A", "a", "C", "c", "C", "c", "C", "c", "C", "c", "D", "d",
    // U+0110: Đ đ Ē ē Ĕ ĕ Ė ė Ę ę Ě ě Ĝ ĝ Ğ ğ
    "D", "d", "E", "e", "E", "e", "E", "e", "E", "e", "E", "e", "G", "g", "G", "g",
    // U+0120: Ġ ġ Ģ ģ Ĥ ĥ Ħ ħ Ĩ ĩ Ī ī Ĭ ĭ Į į
    "G", "g", "G", "g", "H", "h", "H", "h", "I", "i", "I", "i", "I", "i", "I", "i",
    // U+0130: İ ı Ĳ ĳ Ĵ ĵ Ķ ķ ĸ Ĺ ĺ Ļ ļ Ľ ľ Ŀ
    "I", "i", "IJ", "ij", "J", "j", "K", "k", "k", "L", "l", "L", "l", "L", "l", "L",
    // U+0140: ŀ Ł ł Ń ń Ņ ņ Ň ň ŉ Ŋ ŋ Ō ō Ŏ ŏ
    "l", "L", "l", "N", "n", "N", "n", "N", "n", "n", "N", "n", "O", "o", "O", "o",
    // U+0150: Ő ő Œ œ Ŕ ŕ Ŗ ŗ Ř ř Ś ś Ŝ ŝ Ş ş
    "O", "o", "OE", "oe", "R", "r", "R", "r", "R", "r", "S", "s", "S", "s", "S", "s",
    // U+0160: Š š Ţ ţ Ť ť Ŧ ŧ Ũ ũ Ū ū Ŭ ŭ Ů ů
    "S", "s", "T", "t", "T", "t", "T", "t", "U", "u", "U", "u", "U", "u", "U", "u",
    // U+0170: Ű ű Ų ų Ŵ ŵ Ŷ ŷ Ÿ Ź ź Ż ż Ž ž ſ
    "U", "u", "U", "u", "W", "w", "Y", "y", "Y", "Z", "z", "Z", "z", "Z", "z", "s",
];

/// The ASCII spelling of `c`; empty when it has none.
pub(crate) fn to_ascii(c: char) -> &'static str {
    let code = u32::from(c);
    match code {
        0..=0x7F => {
            let index = code as usize;
            &ASCII[index..=index]
        }
        LATIN_START..=LATIN_END => LATIN[(code - LATIN_START) as usize],
        _ => match c {
            'Ə' => "E",
            'ə' => "e",
            'Ơ' => "O",
            'ơ' => "o",
            'Ư' => "U",
            'ư' => "u",
            'Ș' => "S",
            'ș' => "s",
            'Ț' => "T",
            'ț' => "t",
            'ẞ' => "SS",
            // Hyphen, non-breaking hyphen, figure dash, en dash, em dash, horizontal bar.
            '\u{2010}'..='\u{2015}' => "-",
            _ => "",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transliterate(text: &str) -> String {
        text.chars().map(to_ascii).collect()
    }

    #[test]
    fn ascii_maps_to_itself() {
        for byte in 0..128_u8 {
            let c = char::from(byte);
            assert_eq!(to_ascii(c), c.to_string());
        }
    }

    #[test]
    fn table_rows_line_up_with_code_points() {
        // Spot checks at each row's start and end catch a shifted row.
        for (c, spelling) in [
            ('\u{A0}', ""),
            ('ª', "a"),
            ('º', "o"),
            ('¿', ""),
            ('À', "A"),
            ('Ï', "I"),
            ('Ð', "D"),
            ('ß', "ss"),
            ('à', "a"),
            ('ï', "i"),
            ('ð', "d"),
            ('ÿ', "y"),
            ('Ā', "A"),
            ('ď', "d"),
            ('Đ', "D"),
            ('ğ', "g"),
            ('Ġ', "G"),
            ('į', "i"),
            ('İ', "I"),
            ('Ŀ', "L"),
            ('ŀ', "l"),
            ('ŏ', "o"),
            ('Ő', "O"),
            ('ş', "s"),
            ('Š', "S"),
            ('ů', "u"),
            ('Ű', "U"),
            ('ſ', "s"),
        ] {
            assert_eq!(to_ascii(c), spelling, "{c}");
        }
    }

    #[test]
    fn table_keeps_case() {
        for code in LATIN_START..=LATIN_END {
            let Some(c) = char::from_u32(code) else {
                continue;
            };
            let spelling = to_ascii(c);
            assert!(spelling.is_ascii(), "{c}");
            if c.is_uppercase() {
                assert!(!spelling.bytes().any(|b| b.is_ascii_lowercase()), "{c}");
            }
            if c.is_lowercase() {
                assert!(!spelling.bytes().any(|b| b.is_ascii_uppercase()), "{c}");
            }
        }
    }

    #[test]
    fn every_letter_in_the_table_has_a_spelling() {
        for code in 0xC0..=LATIN_END {
            let Some(c) = char::from_u32(code) else {
                continue;
            };
            if c.is_alphabetic() {
                assert!(!to_ascii(c).is_empty(), "{c}");
            }
        }
    }

    #[test]
    fn names_transliterate() {
        assert_eq!(transliterate("José"), "Jose");
        assert_eq!(transliterate("Łukasz"), "Lukasz");
        assert_eq!(transliterate("Müller"), "Muller");
        assert_eq!(transliterate("Straße"), "Strasse");
        assert_eq!(transliterate("STRAẞE"), "STRASSE");
        assert_eq!(transliterate("Øystein"), "Oystein");
        assert_eq!(transliterate("Æsa"), "AEsa");
        assert_eq!(transliterate("cœur"), "coeur");
        assert_eq!(transliterate("Ñandú"), "Nandu");
        assert_eq!(transliterate("Çağla"), "Cagla");
        assert_eq!(transliterate("Šťastný Žižka Čapek"), "Stastny Zizka Capek");
        assert_eq!(transliterate("Ștefan Țiriac"), "Stefan Tiriac");
        assert_eq!(transliterate("Þórður"), "THordur");
        assert_eq!(transliterate("Jean‐Pierre"), "Jean-Pierre");
    }

    #[test]
    fn unmapped_characters_are_dropped() {
        assert_eq!(transliterate("Анна"), "");
        assert_eq!(transliterate("李 Li"), " Li");
        assert_eq!(transliterate("ann🎉a"), "anna");
        assert_eq!(transliterate("×÷"), "");
        // Decomposed é: the combining accent goes, the letter stays.
        assert_eq!(transliterate("Jose\u{301}"), "Jose");
    }
}
