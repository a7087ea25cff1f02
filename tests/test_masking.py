import pytest

from core.masking import mask_email, mask_phone, mask_phones_in, mask_sensitive, register_secret


def test_mask_keeps_country_and_last_two_digits():
    assert mask_phone("+358501234567") == "+3585******67"
    assert mask_phone(None) == "<none>"
    assert mask_phone("123") == "***"


def test_numbers_in_text_are_masked_but_dates_are_not():
    text = mask_phones_in("caller +358 50 123 4567 called 050-123 4567 on 2026-11-24, id 12345")
    assert "123 4567" not in text and "1234567" not in text
    assert "2026-11-24" in text and "12345" in text


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        ("caller +358501234567x", "501234567"),  # glued to a letter (issue 22)
        ("x+358501234567", "501234567"),
        ("enr_e164 eq '+358507654321'", "507654321"),
        ("enr_e164%20eq%20%27%2B358507654321%27", "507654321"),  # URL-encoded in a logged URL
        ("ANum=358501234567&BNum=0942421001", "501234567"),
        ("ANum=358501234567&BNum=0942421001", "942421001"),
        ("mobile 050 123 4567.", "123 4567"),
        ("tel +1 (202) 555-0123", "555-0123"),
    ],
)
def test_phone_numbers_are_masked_wherever_they_stand(text, leaked):
    assert leaked not in mask_phones_in(text)


@pytest.mark.parametrize(
    "text",
    [
        "body of 1048577 bytes",  # issue 22: was masked to "1048*77"
        "read 2500000 calls in 1234567 ms",
        "since 2026-11-24 10:15:00 until 2026-11-24T10:15:00.123",
        "record 1c000000-0000-4000-8000-000000000001, trace 4bf92f3577b34da6a3ce929d0e0e4736",
        "duration 123456.789 ms, ratio 0.1234567",
        "listening on 127.0.0.1:54321",
    ],
)
def test_ordinary_numbers_dates_and_ids_are_not_masked(text):
    assert mask_sensitive(text) == text


def test_email_addresses_are_masked_to_their_domain():
    assert mask_email("aino.virtanen@example.fi") == "***@example.fi"
    text = mask_sensitive("GET /discovery/api/user?user=aino.virtanen%40example.fi, then mail liisa+x@corp.example.com")
    assert "aino" not in text and "liisa" not in text
    assert "***@example.fi" in text and "***@corp.example.com" in text


def test_credentials_and_registered_secrets_are_masked():
    register_secret("registered-secret-0123456789")
    text = mask_sensitive(
        "key registered-secret-0123456789; Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl "
        "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=Eby8vdM02xNOcqFl==; "
        "/api/routing?code=abcdefgh12345&x=1"
    )
    for secret in ("registered-secret-0123456789", "eyJhbGciOiJIUzI1NiJ9", "Eby8vdM02xNOcqFl", "abcdefgh12345"):
        assert secret not in text
    assert "AccountName=a" in text and "x=1" in text
    register_secret("short")  # too short to mask without blanking words
    assert mask_sensitive("a short word") == "a short word"
