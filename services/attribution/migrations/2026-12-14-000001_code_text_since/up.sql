-- Since when each code has had its text (minted or renamed to it): an order placed before then
-- used someone else's code of that text (the brand's own promotion, say), not the creator's. A
-- text a code had before a rename keeps its start too. Null for what was projected before these
-- columns: no bound.
alter table codes add column text_since timestamptz;
alter table code_texts add column valid_from timestamptz;
