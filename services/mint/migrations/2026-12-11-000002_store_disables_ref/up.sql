-- The ref of the discount to deactivate (the code's `code-{id}`, as pushed): where the store
-- keeps refs, only that discount is touched, not another code's of the same text. Rows queued
-- before this column have none: any of the suite's discounts of the text.
alter table store_disables add column external_ref text not null default '';
