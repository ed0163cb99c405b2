"""Progress lines reach stderr one whole line per write, also with unbuffered Python output
(PYTHONUNBUFFERED=1, as in the container), so lines of MPI ranks sharing a stream cannot interleave
mid-line: MPICH 4.0's mpiexec forwards each write as it comes (seen: two ranks' print() output
merged into one line in a third of the runs in the image)."""

import io
import sys

from dpot_hpc.progress import MemberLog, emit


class _Writes(io.RawIOBase):
    """A raw stream that records each write it receives."""

    def __init__(self):
        self.writes: list[bytes] = []

    def writable(self):
        return True

    def write(self, b):
        self.writes.append(bytes(b))
        return len(b)


def test_each_progress_line_is_one_write_on_an_unbuffered_stream(monkeypatch, tmp_path):
    raw = _Writes()
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(raw, encoding="utf-8", write_through=True))
    emit("dpot-hpc[rank 1] df stage: df_seed-000 done")
    log = MemberLog(tmp_path / "m.log", "df df_seed-000")
    log("epoch 1/3 train 1.0 val 1.1")
    log.close()
    assert len(raw.writes) == 2
    assert all(w.endswith(b"\n") and w.count(b"\n") == 1 for w in raw.writes), raw.writes
    assert b"epoch 1/3" in raw.writes[1] and "epoch 1/3" in (tmp_path / "m.log").read_text()
