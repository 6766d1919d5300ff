-- Which failures were the brand's before cannot be told again; they stay as they are.
select 1;
