// Mirrors migrations/ (what `diesel print-schema --schema gateway` prints for them).

diesel::table! {
    integrations (brand_id, id) {
        brand_id -> Int8,
        id -> Int8,
        provider -> Text,
        name -> Text,
        shop_domain -> Text,
        base_url -> Text,
        credential_fields -> Array<Text>,
        credentials_sealed -> Bytea,
        webhook_secret_sealed -> Nullable<Bytea>,
        created_at -> Timestamptz,
    }
}
