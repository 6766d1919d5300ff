drop statistics codes_lower_code;
