//! Order intake from the stores' webhooks: signature checks and payload parsing into
//! [`NormalizedOrder`](crate::domain::orders::NormalizedOrder). (The HTTP routes, storage and
//! `WatchOrders` that use them are the next step of the gateway issue.)

pub mod shopify;
