//! The suite's Protobuf API: messages, tonic clients and servers for every service, and the
//! encoded file descriptor set that gRPC reflection serves.

/// Every message and service of the suite, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tracking_descriptor.bin"));

pub mod common {
    pub mod v1 {
        tonic::include_proto!("tracking.common.v1");

        /// Digits after the decimal point of an ISO 4217 currency (the minor units of `Money`).
        pub fn currency_exponent(currency: &str) -> u8 {
            match currency {
                "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF"
                | "UGX" | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
                "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
                _ => 2,
            }
        }

        /// `minor` units of `currency` as exact decimal text ("12.50", "1200" for JPY, "-0.05").
        pub fn format_minor(minor: i64, currency: &str) -> String {
            let exponent = u32::from(currency_exponent(currency));
            let sign = if minor < 0 { "-" } else { "" };
            let abs = minor.unsigned_abs();
            if exponent == 0 {
                return format!("{sign}{abs}");
            }
            let unit = 10u64.pow(exponent);
            let width = exponent as usize;
            format!("{sign}{}.{:0width$}", abs / unit, abs % unit)
        }
    }
}

pub mod attribution {
    pub mod v1 {
        tonic::include_proto!("tracking.attribution.v1");
    }
}

pub mod gateway {
    pub mod v1 {
        tonic::include_proto!("tracking.gateway.v1");

        /// The number a store takes for a product or category restriction id: the id itself, a
        /// whole number that fits a `u64`, or, where the store also writes its ids as global ids
        /// (`gid_prefix`, from `Capabilities`: `gid://shopify/Product/`), that prefix and the
        /// number. `None` when `id` is neither. Surrounding spaces are ignored.
        pub fn restriction_number(id: &str, gid_prefix: &str) -> Option<u64> {
            let id = id.trim();
            let number = match id.strip_prefix(gid_prefix) {
                Some(number) if !gid_prefix.is_empty() => number,
                _ => id,
            };
            if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            number.parse().ok()
        }
    }
}

pub mod plan {
    pub mod v1 {
        tonic::include_proto!("tracking.plan.v1");
    }
}

pub mod mint {
    pub mod v1 {
        tonic::include_proto!("tracking.mint.v1");

        /// `CodeChange.reason` of a rename the store forced: it held the text already, so the
        /// code was suffixed.
        pub const STORE_COLLISION: &str = "store_collision";
        /// `CodeChange.reason` of a brand's edit.
        pub const MANUAL: &str = "manual";
    }
}
