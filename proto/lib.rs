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
    }
}
