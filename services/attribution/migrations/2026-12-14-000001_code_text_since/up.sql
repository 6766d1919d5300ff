-- When each code came to have its text (minted with it, or renamed to it): an order placed
-- before then used someone else's code of that text (the brand's own promotion, say), not the
-- creator's. Null for codes projected before this column: no bound.
alter table codes add column text_since timestamptz;
