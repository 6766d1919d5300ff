//! What the minting service's parts share: the database, the gateway, the public base URL of
//! tracking links.

use tracking_db::Database;

use crate::stores::Stores;

#[derive(Clone, Debug)]
pub struct Shared {
    pub db: Database,
    pub stores: Stores,
    /// Where the suite's redirect (`/r/{slug}`) is reachable by shoppers.
    pub public_base_url: String,
}
