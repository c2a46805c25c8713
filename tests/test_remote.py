

def test_a_truncated_answer_is_named_not_taken_for_an_http_400():
    """aiohttp reports a short body as '400, message:' and the reason on the next line."""
    from aiohttp.http_exceptions import ContentLengthError

    from pdebench_core.data.remote import _reason

    wrapped = OSError("fsspec's own wrapper")
    wrapped.__cause__ = ContentLengthError("Not enough data to satisfy content length header.")
    assert _reason(wrapped) == "Not enough data to satisfy content length header."
