"""Unit tests of the sbatch backend's argv and error handling (pytest-subprocess).

The real thing is proven in tests/integration against a real Slurm."""

from __future__ import annotations

import pytest

from slurmc.backends import get_backend, parse_parsable
from slurmc.errors import ConfigError, ExternalCommandError, SubmissionError, ToolMissingError


@pytest.mark.parametrize(
    ("stdout", "job", "cluster"),
    [
        ("1234\n", "1234", None),
        ("1234;lumi\n", "1234", "lumi"),
        ("Welcome to LUMI!\nRemember: quota\n5678;lumi\n", "5678", "lumi"),
        ("  42  \n\n", "42", None),
    ],
)
def test_parse_parsable(stdout, job, cluster):
    sub = parse_parsable(stdout)
    assert (sub.job_id, sub.cluster) == (job, cluster)


def test_parse_parsable_without_an_id():
    with pytest.raises(SubmissionError, match="squeue --me"):
        parse_parsable("sbatch: something odd\n")


def test_submit_sends_the_script_on_stdin(fp):
    fp.register(["sbatch", "--parsable"], stdout="77;dev\n")
    sub = get_backend("sbatch").submit("#!/bin/bash\ntrue\n", cwd="/tmp")
    assert sub.job_id == "77"
    assert fp.call_count(["sbatch", "--parsable"]) == 1


def test_submit_failure_carries_stderr(fp):
    fp.register(
        ["sbatch", "--parsable"],
        returncode=1,
        stderr="sbatch: error: Batch job submission failed: Invalid partition name specified\n",
    )
    with pytest.raises(ExternalCommandError, match="Invalid partition name specified"):
        get_backend("sbatch").submit("#!/bin/bash\n", cwd="/tmp")


def test_missing_sbatch(fp):
    fp.register(["sbatch", "--parsable"], callback=_raise_fnf)
    with pytest.raises(ToolMissingError, match="sbatch not found on PATH"):
        get_backend("sbatch").submit("#!/bin/bash\n", cwd="/tmp")


def _raise_fnf(process):
    raise FileNotFoundError("sbatch")


def test_interactive_runs_salloc_with_the_options_then_the_step(fp):
    fp.register(
        ["salloc", "--partition=small", "bash", "-c", "srun x", "slurmc-step"], returncode=3
    )
    code = get_backend("sbatch").run_interactive(["--partition=small"], "srun x", cwd="/tmp")
    assert code == 3


def test_pyslurm_backend_is_refused_clearly_where_it_does_not_import():
    try:
        import pyslurm  # type: ignore[import-not-found]  # noqa: F401
    except Exception:
        with pytest.raises(ConfigError, match="import pyslurm"):
            get_backend("pyslurm")
    else:  # pragma: no cover - a machine with a matching pyslurm
        assert get_backend("pyslurm").name == "pyslurm"


def test_unknown_backend():
    with pytest.raises(ConfigError, match="unknown backend"):
        get_backend("lsf")


# ---- job queries: parsers fed output captured from Slurm 22.05.8 (scripts/devcluster) ------

#: squeue -h -a -t all -j 128,...,999999 \
#:     -O JobID:|,ArrayJobID:|,State:|,exit_code:|,Reason:|,Comment:|
#: 128 is a job array (--array=1-6%2) whose tasks got ids 133, 134, 253...; 130 ran past
#: --time=1; 131 was scancelled; 132 killed itself with SIGKILL; 104 exited 3.
SQUEUE_FINISHED = """\
131|131|CANCELLED|15|None|(null)|
107|107|COMPLETED|0|None|slurmc:b2f613d45c937a81|
301|128|COMPLETED|0|None|arr [slurmc:00112233445566aa]|
128|128|COMPLETED|0|None|arr [slurmc:00112233445566aa]|
253|128|COMPLETED|0|None|arr [slurmc:00112233445566aa]|
254|128|COMPLETED|0|None|arr [slurmc:00112233445566aa]|
133|128|COMPLETED|0|None|arr [slurmc:00112233445566aa]|
134|128|COMPLETED|0|None|arr [slurmc:00112233445566aa]|
129|129|COMPLETED|0|None|(null)|
104|104|FAILED|768|NonZeroExitCode|slurmc:1751b149c2ea3503|
132|132|FAILED|9|JobLaunchFailure|(null)|
130|130|TIMEOUT|15|TimeLimit|(null)|
"""

#: the same jobs a minute earlier, while they ran
SQUEUE_LIVE = """\
131|131|CANCELLED|15|None|(null)|
107|107|COMPLETED|0|None|slurmc:b2f613d45c937a81|
104|104|FAILED|768|NonZeroExitCode|slurmc:1751b149c2ea3503|
132|132|FAILED|9|JobLaunchFailure|(null)|
128|128|PENDING|0|JobArrayTaskLimit|arr [slurmc:00112233445566aa]|
133|128|RUNNING|0|None|arr [slurmc:00112233445566aa]|
134|128|RUNNING|0|None|arr [slurmc:00112233445566aa]|
129|129|RUNNING|0|None|(null)|
130|130|RUNNING|0|None|(null)|
"""


def test_parse_squeue_finished_jobs():
    from slurmc.backends.sbatch import parse_squeue

    got = parse_squeue(SQUEUE_FINISHED, ["104", "107", "129", "130", "131", "132", "999999"])
    summary = {k: (v.state, v.exit_code, v.signal) for k, v in got.items()}
    assert summary == {
        "104": ("FAILED", 3, 0),
        "107": ("COMPLETED", 0, 0),
        "129": ("COMPLETED", 0, 0),
        "130": ("TIMEOUT", 0, 15),
        "131": ("CANCELLED", 0, 15),
        "132": ("FAILED", 0, 9),
    }
    assert got["104"].reason == "NonZeroExitCode" and got["104"].source == "squeue"
    assert all(st.final for st in got.values())


#: the same finished jobs as Slurm 24.11's squeue (Debian 13) prints them: exit_code is
#: EXIT:SIGNAL, as sacct and scontrol print it (first line as printed by the real one)
SQUEUE_FINISHED_24_11 = """\
88|88|FAILED|3:0|NonZeroExitCode|(null)|
104|104|FAILED|3:0|NonZeroExitCode|slurmc:1751b149c2ea3503|
107|107|COMPLETED|0:0|None|slurmc:b2f613d45c937a81|
130|130|TIMEOUT|0:15|TimeLimit|(null)|
131|131|CANCELLED|0:15|None|(null)|
132|132|FAILED|0:9|JobLaunchFailure|(null)|
"""


def test_parse_squeue_reads_either_exit_code_form():
    """Slurm 22.05 prints a raw wait status, 24.11 EXIT:SIGNAL: the same outcome."""
    from slurmc.backends.sbatch import parse_squeue

    ids = ["104", "107", "130", "131", "132"]
    old = {
        k: (v.state, v.exit_code, v.signal) for k, v in parse_squeue(SQUEUE_FINISHED, ids).items()
    }
    new = parse_squeue(SQUEUE_FINISHED_24_11, ["88", *ids])
    assert (new["88"].state, new["88"].exit_code, new["88"].signal) == ("FAILED", 3, 0)
    assert {k: (v.state, v.exit_code, v.signal) for k, v in new.items() if k != "88"} == old


def test_parse_squeue_live_jobs_have_no_exit_code_yet():
    from slurmc.backends.sbatch import parse_squeue

    got = parse_squeue(SQUEUE_LIVE, ["129", "130"])
    assert [(v.state, v.exit_code, v.final) for v in got.values()] == [
        ("RUNNING", None, False),
        ("RUNNING", None, False),
    ]


def test_parse_squeue_answers_for_a_job_array_as_a_whole():
    from slurmc.backends.sbatch import parse_squeue

    live = parse_squeue(SQUEUE_LIVE, ["128"])["128"]
    assert live.state == "RUNNING" and not live.final
    assert live.reason == "array: 1 PENDING, 2 RUNNING"
    done = parse_squeue(SQUEUE_FINISHED, ["128"])["128"]
    assert (done.state, done.exit_code, done.reason) == ("COMPLETED", 0, "array: 6 COMPLETED")
    failed = parse_squeue(
        "128|128|COMPLETED|0|None||\n133|128|FAILED|512|NonZeroExitCode||\n", ["128"]
    )["128"]
    assert (failed.state, failed.exit_code) == ("FAILED", 2)


def test_parse_squeue_keeps_a_comment_holding_the_separator():
    from slurmc.backends.sbatch import parse_squeue, parse_tagged

    line = "78|78|FAILED|768|NonZeroExitCode|hello | x [slurmc:00112233445566aa]|\n"
    assert parse_squeue(line)["78"].exit_code == 3
    assert parse_tagged("78|hello | x [slurmc:00112233445566aa]|\n", "slurmc:00112233445566aa") == [
        "78"
    ]


#: squeue -h -a --me -t all -O ArrayJobID:|,Comment:|
SQUEUE_TAGS = """\
100|(null)|
256|slurmc:e9c8993de03b56ba|
257|(null)|
258|slurmc:b8c361a1648c8113|
128|arr [slurmc:00112233445566aa]|
128|arr [slurmc:00112233445566aa]|
260|my slurmc:b8c361a1648c8113 notes [slurmc:b628a847261819c3]|
"""


def test_parse_tagged_finds_exactly_the_tag():
    from slurmc.backends.sbatch import parse_tagged

    assert parse_tagged(SQUEUE_TAGS, "slurmc:e9c8993de03b56ba") == ["256"]
    assert parse_tagged(SQUEUE_TAGS, "slurmc:00112233445566aa") == ["128"]  # array: once
    assert parse_tagged(SQUEUE_TAGS, "slurmc:b8c361a1648c8113") == ["258", "260"]
    assert parse_tagged(SQUEUE_TAGS, "slurmc:b8c361a1648c811") == []  # a prefix is not the tag
    assert parse_tagged(SQUEUE_TAGS, "slurmc:ffffffffffffffff") == []


def test_parse_sacct():
    from slurmc.backends.sbatch import parse_sacct

    # sacct -n -P -X -o JobIDRaw,State,ExitCode (format from the sacct manual; accounting
    # is off on the test cluster, so this one is not captured)
    got = parse_sacct("12|COMPLETED|0:0\n13|CANCELLED by 1000|0:15\n14|FAILED|2:0\n")
    assert {k: (v.state, v.exit_code, v.signal) for k, v in got.items()} == {
        "12": ("COMPLETED", 0, 0),
        "13": ("CANCELLED", 0, 15),
        "14": ("FAILED", 2, 0),
    }


SQUEUE_ARGV = [
    "squeue",
    "-h",
    "-a",
    "-t",
    "all",
    "-j",
    "104,130",
    "-O",
    "JobID:|,ArrayJobID:|,State:|,exit_code:|,Reason:|,Comment:|",
]


def test_status_is_one_squeue_call_for_all_jobs(fp):
    from slurmc.backends.sbatch import SlurmCommands

    fp.register(SQUEUE_ARGV, stdout=SQUEUE_FINISHED)
    got = SlurmCommands().status(["104", "130"])
    assert set(got) == {"104", "130"}
    assert fp.call_count(SQUEUE_ARGV) == 1


def test_status_of_a_single_forgotten_job_is_empty(fp):
    from slurmc.backends.sbatch import SlurmCommands

    argv = [*SQUEUE_ARGV]
    argv[6] = "999999"
    fp.register(argv, returncode=1, stderr="slurm_load_jobs error: Invalid job id specified\n")
    assert SlurmCommands().status(["999999"]) == {}


def test_status_when_the_controller_does_not_answer_raises(fp):
    from slurmc.backends.sbatch import SlurmCommands

    fp.register(
        SQUEUE_ARGV,
        returncode=1,
        stderr="slurm_load_jobs error: Socket timed out on send/recv operation\n",
    )
    with pytest.raises(ExternalCommandError, match="Socket timed out"):
        SlurmCommands().status(["104", "130"])


def test_accounting_disabled_raises(fp):
    from slurmc.backends.sbatch import SlurmCommands

    fp.register(
        ["sacct", "-n", "-P", "-X", "-j", "5", "-o", "JobIDRaw,State,ExitCode"],
        returncode=1,
        stderr="Slurm accounting storage is disabled\n",
    )
    with pytest.raises(ExternalCommandError, match="accounting storage is disabled"):
        SlurmCommands().accounting(["5"])


def test_find_tagged_and_cancel_argv(fp):
    from slurmc.backends.sbatch import SlurmCommands

    argv = ["squeue", "-h", "-a", "--me", "-t", "all", "-O", "ArrayJobID:|,Comment:|"]
    fp.register(argv, stdout=SQUEUE_TAGS)
    assert SlurmCommands().find_tagged("slurmc:e9c8993de03b56ba") == ["256"]
    fp.register(["scancel", "258", "260"])
    SlurmCommands().cancel(["258", "260"])
    assert fp.call_count(["scancel", "258", "260"]) == 1


def test_configured_cluster_reads_slurm_conf(tmp_path):
    from slurmc.backends.sbatch import configured_cluster

    conf = tmp_path / "slurm.conf"
    conf.write_text("# ClusterName=commented\nSlurmctldHost=x\nclustername=LUMI # the name\n")
    assert configured_cluster({"SLURM_CONF": str(conf)}) == "lumi"
    assert configured_cluster({"SLURM_CONF": str(tmp_path / "none")}) is None
    conf.write_text("SlurmctldHost=x\n")
    assert configured_cluster({"SLURM_CONF": str(conf)}) is None


def test_submit_timeout_comes_from_the_environment(monkeypatch):
    from slurmc.backends.sbatch import SUBMIT_TIMEOUT, SbatchBackend

    monkeypatch.delenv("SLURMC_SUBMIT_TIMEOUT", raising=False)
    assert SbatchBackend().timeout == SUBMIT_TIMEOUT >= 180  # longer than sbatch's own retry
    monkeypatch.setenv("SLURMC_SUBMIT_TIMEOUT", "5")
    assert SbatchBackend().timeout == 5
    monkeypatch.setenv("SLURMC_SUBMIT_TIMEOUT", "soon")
    with pytest.raises(SubmissionError, match="SLURMC_SUBMIT_TIMEOUT"):
        SbatchBackend()


def test_sbatch_killed_at_our_timeout_may_have_submitted(tmp_path, monkeypatch):
    from slurmc.backends.base import may_have_submitted
    from slurmc.backends.sbatch import SbatchBackend

    hung = tmp_path / "sbatch"  # a real process that never answers, killed at the time-out
    hung.write_text("#!/bin/sh\nexec sleep 30\n")
    hung.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with pytest.raises(ExternalCommandError) as info:
        SbatchBackend(timeout=0.3).submit("#!/bin/bash\n", cwd=str(tmp_path))
    assert "timed out after 0.3 s" in str(info.value)
    assert may_have_submitted(info.value)


# ---- safe submission (slurmc.backends.base.submit_safely): every branch, no cluster ------

TAG = "slurmc:0123456789abcdef"
TIMED_OUT = ExternalCommandError(
    "sbatch",
    1,
    "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation",
)
NO_CONTROLLER = ExternalCommandError(
    "squeue", 1, "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"
)
INVALID_PARTITION = ExternalCommandError(
    "sbatch", 1, "sbatch: error: Batch job submission failed: Invalid partition name specified"
)


class Script:
    """Plays back answers: a value is returned, an exception raised."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, *args):
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def safely(submit, look, *, delays=(10.0, 30.0)):
    from slurmc.backends.base import submit_safely

    slept: list[float] = []
    notes: list[str] = []
    cancelled: list[list[str]] = []
    sub = submit_safely(
        submit,
        look,
        lambda ids: cancelled.append(list(ids)),
        tag=TAG,
        delays=delays,
        sleep=slept.append,
        notify=notes.append,
    )
    return sub, slept, notes, cancelled


def sub(job_id):
    from slurmc.backends.base import Submission

    return Submission(job_id)


def test_success_needs_no_look_up():
    submit, look = Script(sub("5")), Script()
    got, slept, notes, _ = safely(submit, look)
    assert (got.job_id, got.attempts, got.recovered) == ("5", 1, False)
    assert (submit.calls, look.calls, slept, notes) == (1, 0, [], [])


def test_an_error_that_created_nothing_is_not_retried():
    from slurmc.backends.base import submit_safely

    submit, look = Script(INVALID_PARTITION), Script()
    with pytest.raises(ExternalCommandError, match="Invalid partition"):
        submit_safely(submit, look, lambda ids: None, tag=TAG, sleep=lambda s: None)
    assert (submit.calls, look.calls) == (1, 0)


def test_a_timed_out_submit_that_created_the_job_is_found_not_repeated():
    submit, look = Script(TIMED_OUT), Script(["77"])
    got, slept, notes, _ = safely(submit, look)
    assert (got.job_id, got.recovered, got.attempts) == ("77", True, 1)
    assert submit.calls == 1 and slept == [10.0]
    assert "Socket timed out" in notes[0] and TAG in notes[0]
    assert "job 77 carries tag" in notes[-1]


def test_a_look_up_the_controller_does_not_answer_is_asked_again_without_submitting():
    submit, look = Script(TIMED_OUT), Script(NO_CONTROLLER, ["77"])
    got, slept, notes, _ = safely(submit, look)
    assert got.job_id == "77" and submit.calls == 1
    assert slept == [10.0, 30.0]
    assert "did not answer" in notes[1]


def test_no_job_with_the_tag_means_submit_again():
    submit, look = Script(TIMED_OUT, sub("80")), Script([], ["80"])
    got, slept, notes, cancelled = safely(submit, look)
    assert (got.job_id, got.attempts, got.recovered) == ("80", 2, False)
    assert submit.calls == 2 and slept == [10.0] and cancelled == []
    assert "submitting again (attempt 2)" in notes[1]


def test_a_late_first_request_makes_the_resubmission_a_duplicate_that_is_cancelled():
    submit, look = Script(TIMED_OUT, sub("81")), Script([], ["79", "81"])
    got, _, notes, cancelled = safely(submit, look)
    assert got.job_id == "79" and got.recovered
    assert cancelled == [["81"]]
    assert "more than once" in notes[-1]


def test_bounded_when_slurm_never_answers():
    submit, look = Script(TIMED_OUT), Script(NO_CONTROLLER, NO_CONTROLLER, NO_CONTROLLER)
    with pytest.raises(SubmissionError) as info:
        safely(submit, look, delays=(10.0, 30.0))
    assert submit.calls == 1 and look.calls == 2  # one look per round, never a blind retry
    assert TAG in str(info.value) and "squeue --me" in str(info.value)


def test_bounded_when_every_attempt_times_out():
    submit = Script(TIMED_OUT, TIMED_OUT, TIMED_OUT)
    look = Script([], [])
    with pytest.raises(SubmissionError, match="after 3 attempt"):
        safely(submit, look, delays=(1.0, 2.0))
    assert submit.calls == 3


def test_a_resubmission_refused_for_good_is_raised():
    submit, look = Script(TIMED_OUT, INVALID_PARTITION), Script([])
    with pytest.raises(ExternalCommandError, match="Invalid partition"):
        safely(submit, look)


def test_an_answer_without_an_id_is_recovered_by_the_tag():
    submit, look = Script(SubmissionError("sbatch printed no job id")), Script(["90"])
    got, slept, _, _ = safely(submit, look)
    assert got.job_id == "90" and got.recovered and slept == []


def test_an_answer_without_an_id_and_no_tagged_job_is_an_error():
    submit, look = Script(SubmissionError("sbatch printed no job id")), Script([])
    with pytest.raises(SubmissionError, match="no job id"):
        safely(submit, look)


def test_interrupted_while_waiting_names_the_tag():
    from slurmc.backends.base import submit_safely

    def sleep(_):
        raise KeyboardInterrupt

    with pytest.raises(SubmissionError, match=TAG):
        submit_safely(Script(TIMED_OUT), Script(), lambda ids: None, tag=TAG, sleep=sleep)


@pytest.mark.parametrize(
    ("tool", "code", "stderr", "maybe"),
    [
        ("sbatch", 1, "Batch job submission failed: Socket timed out on send/recv operation", True),
        (
            "sbatch",
            1,
            "Batch job submission failed: Unable to contact slurm controller (connect failure)",
            True,
        ),
        ("sbatch", 1, "Batch job submission failed: Resource temporarily unavailable", True),
        (
            "sbatch",
            1,
            "sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying",
            True,
        ),
        ("sbatch", 1, "slurm_receive_msg: Zero Bytes were transmitted or received", True),
        ("sbatch", -1, "\ntimed out after 300 s", True),
        ("sbatch", -9, "", True),
        ("sbatch", 1, "Batch job submission failed: Invalid partition name specified", False),
        (
            "sbatch",
            1,
            "Batch job submission failed: Invalid account or account/partition combination"
            " specified",
            False,
        ),
        (
            "sbatch",
            1,
            "Batch job submission failed: Requested time limit is invalid"
            " (missing or exceeds some limit)",
            False,
        ),
        ("sbatch", 1, "sbatch: error: invalid partition specified: nope", False),
        ("sbatch", 1, "Batch job submission failed: Job violates accounting/QOS policy", False),
    ],
)
def test_may_have_submitted(tool, code, stderr, maybe):
    from slurmc.backends.base import may_have_submitted

    assert may_have_submitted(ExternalCommandError(tool, code, stderr)) is maybe


def test_may_have_submitted_is_false_for_other_errors():
    from slurmc.backends.base import may_have_submitted

    assert not may_have_submitted(ToolMissingError("sbatch not found on PATH"))


def test_tags_and_comments():
    from slurmc.backends.base import TAG_RE, new_tag, tag_in, tagged_comment

    a, b = new_tag(), new_tag()
    assert a != b and TAG_RE.fullmatch(a)
    assert tagged_comment(None, a) == a
    assert tagged_comment("my run 3", a) == f"my run 3 [{a}]"  # the user's comment first
    assert tag_in(tagged_comment("x", a)) == a
    assert tag_in("no tag here") is None


@pytest.mark.parametrize(
    ("text", "delays"),
    [(None, (10.0, 30.0)), ("", (10.0, 30.0)), ("1,2.5", (1.0, 2.5)), ("0", (0.0,))],
)
def test_parse_delays(text, delays):
    from slurmc.backends.base import parse_delays

    assert parse_delays(text, (10.0, 30.0)) == delays


@pytest.mark.parametrize("text", ["soon", "1,-2", "1,,2"])
def test_parse_delays_rejects(text):
    from slurmc.backends.base import parse_delays

    with pytest.raises(SubmissionError, match="SLURMC_SUBMIT_RETRY_DELAYS"):
        parse_delays(text, (10.0,))
