from hypothesis import given
from hypothesis import strategies as st

from ptsp_gate.contract.cloudevents import pack_headers, unpack_headers

header = st.tuples(st.text(max_size=40), st.binary(max_size=200))


@given(st.lists(header, max_size=20))
def test_headers_round_trip_byte_for_byte(headers: list[tuple[str, bytes]]) -> None:
    assert unpack_headers(pack_headers(headers)) == headers
