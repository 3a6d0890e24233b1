"""The journal of finished items and provenance.json: what a resume trusts, and what it ignores."""
import hashlib
import json

import numpy as np

from gpucomp.outdir.journal import (
    Journal,
    file_sha256,
    is_known,
    load_records,
    rewrite_journal,
    unfinished,
    write_provenance,
)

JOURNAL = "gpucomp.journal"  # names as the README gives them
PROVENANCE = "provenance.json"


def sha(k: int) -> str:
    return hashlib.sha256(str(k).encode()).hexdigest()


def row(hexdigest: str) -> list[int]:
    return list(bytes.fromhex(hexdigest))


def test_a_record_is_in_the_file_as_soon_as_it_is_made(tmp_path):
    """A kill -9 right after record() must not lose the line: it is flushed to the kernel, so
    another reader sees it before the journal is closed."""
    j = Journal(tmp_path / JOURNAL, fresh=True)
    try:
        j.record(7, sha(7))
        assert (tmp_path / JOURNAL).read_text(encoding="ascii") == f"7 {sha(7)}\n"
        j.record(8, sha(8))
        assert (tmp_path / JOURNAL).read_text(encoding="ascii") == f"7 {sha(7)}\n8 {sha(8)}\n"
    finally:
        j.close()


def test_a_resumed_run_appends_and_a_fresh_one_starts_over(tmp_path):
    j = Journal(tmp_path / JOURNAL, fresh=True)
    j.record(1, sha(1))
    j.close()
    j = Journal(tmp_path / JOURNAL, fresh=False)  # resume: what was finished stays recorded
    j.record(2, sha(2))
    j.close()
    assert (tmp_path / JOURNAL).read_text(encoding="ascii") == f"1 {sha(1)}\n2 {sha(2)}\n"
    j = Journal(tmp_path / JOURNAL, fresh=True)
    j.close()
    assert (tmp_path / JOURNAL).read_text(encoding="ascii") == ""


def write_prov(out, items):
    (out / PROVENANCE).write_text(json.dumps({"items": [{"number": n, "sha256": h} for n, h in items]}),
                                  encoding="utf-8")


def test_load_records_reads_provenance_then_the_journal_later_lines_win(tmp_path):
    write_prov(tmp_path, [(10, sha(10)), (11, sha(11)), (12, sha(12))])
    (tmp_path / JOURNAL).write_text(f"11 {sha(111)}\n13 {sha(13)}\n13 {sha(113)}\n", encoding="ascii")
    shas = load_records(tmp_path, start=10, n=5)
    assert shas.shape == (5, 32) and shas.dtype == np.uint8
    assert shas.tolist() == [row(sha(10)), row(sha(111)), row(sha(12)), row(sha(113)), [0] * 32]
    assert [is_known(r) for r in shas] == [True, True, True, True, False]


def test_load_records_ignores_numbers_outside_the_collection(tmp_path):
    """Numbers before start, at start + n (one past the last item) and far beyond are ignored:
    a journal of a larger or shifted collection never fills, or overruns, this one's rows."""
    write_prov(tmp_path, [(4, sha(4)), (8, sha(8)), (5, sha(5))])
    (tmp_path / JOURNAL).write_text(f"8 {sha(88)}\n9 {sha(9)}\n1000000 {sha(1)}\n6 {sha(6)}\n", encoding="ascii")
    shas = load_records(tmp_path, start=5, n=3)
    assert shas.tolist() == [row(sha(5)), row(sha(6)), [0] * 32]


def test_load_records_skips_damaged_entries(tmp_path):
    write_prov(tmp_path, [(1, sha(1)), ("2", sha(2)), (3, sha(3)[:10]), (4, "zz" * 32)])
    (tmp_path / JOURNAL).write_text(f"x {sha(6)}\n2 {sha(2)} extra\n3 {'g' * 64}\n\n4 {sha(4)}\n5 {sha(5)[:20]}",
                                    encoding="ascii")  # the last line is torn: no newline
    shas = load_records(tmp_path, start=1, n=5)
    assert [is_known(r) for r in shas] == [True, False, False, True, False]
    assert shas[3].tolist() == row(sha(4))


def test_load_records_without_files_or_with_a_broken_provenance(tmp_path):
    assert not load_records(tmp_path, 1, 4).any()
    (tmp_path / PROVENANCE).write_text("[1, 2", encoding="utf-8")
    (tmp_path / JOURNAL).write_text(f"2 {sha(2)}\n", encoding="ascii")
    assert [is_known(r) for r in load_records(tmp_path, 1, 3)] == [False, True, False]


def test_provenance_hash_is_sha256_of_the_concatenated_hex_digests(tmp_path):
    digests = [sha(k) for k in (3, 1, 2)]
    shas = np.array([row(h) for h in digests], np.uint8)
    got = write_provenance(tmp_path, [30, 31, 32], shas)
    want = hashlib.sha256("".join(digests).encode()).hexdigest()
    assert got == want
    prov = json.loads((tmp_path / PROVENANCE).read_text(encoding="ascii"))
    assert prov["provenance_hash"] == want and prov["count"] == 3 and prov["algorithm"] == "sha256"
    assert prov["items"] == [{"number": n, "sha256": h} for n, h in zip([30, 31, 32], digests, strict=True)]
    assert load_records(tmp_path, 30, 3).tolist() == shas.tolist()


def test_rewrite_journal_keeps_known_records_and_drops_provenance(tmp_path):
    """Before a re-render: the records of items whose art changed are dropped (rows of zeros),
    and provenance.json goes too, or its old hashes would vouch for the old images."""
    shas = np.array([row(sha(1)), [0] * 32, row(sha(3))], np.uint8)
    write_prov(tmp_path, [(1, sha(1)), (2, sha(2)), (3, sha(3))])
    rewrite_journal(tmp_path, [1, 2, 3], shas)
    assert (tmp_path / JOURNAL).read_text(encoding="ascii") == f"1 {sha(1)}\n3 {sha(3)}\n"
    assert not (tmp_path / PROVENANCE).exists()
    assert [is_known(r) for r in load_records(tmp_path, 1, 3)] == [True, False, True]
    assert unfinished(tmp_path)


def test_unfinished_until_provenance_is_written_and_the_journal_removed(tmp_path):
    assert unfinished(tmp_path)  # nothing yet
    (tmp_path / JOURNAL).write_text("", encoding="ascii")
    assert unfinished(tmp_path)  # running
    write_prov(tmp_path, [])
    assert unfinished(tmp_path)  # provenance written, journal not yet removed
    (tmp_path / JOURNAL).unlink()
    assert not unfinished(tmp_path)  # finished


def test_file_sha256(tmp_path):
    (tmp_path / "a.png").write_bytes(b"abc")
    assert file_sha256(tmp_path / "a.png") == hashlib.sha256(b"abc").digest()
    assert file_sha256(tmp_path / "missing.png") is None
