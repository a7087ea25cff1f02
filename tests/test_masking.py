from core.masking import mask_phone, mask_phones_in


def test_mask_keeps_country_and_last_two_digits():
    assert mask_phone("+358501234567") == "+3585******67"
    assert mask_phone(None) == "<none>"
    assert mask_phone("123") == "***"


def test_numbers_in_text_are_masked_but_dates_are_not():
    text = mask_phones_in("caller +358 50 123 4567 called 050-123 4567 on 2026-11-24, id 12345")
    assert "123 4567" not in text and "1234567" not in text
    assert "2026-11-24" in text and "12345" in text
