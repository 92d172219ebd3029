"""vitc's thread pool (csrc/threadpool.c) on its own: team sizes that change between calls, callers that come
and go, several Python threads running regions at once, and results that do not depend on the thread count.

_vitc.pool_probe(n) runs an n-thread region through several barriers and an atomic work queue and returns
how many distinct OS threads ran it (-1 if a barrier or the queue misbehaved). Each case runs in a subprocess
with a timeout (tests/fork_helpers.py): a deadlock fails the test instead of hanging the run.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from fork_helpers import run_case  # noqa: E402

OS_THREADS = '''
def os_threads():
    """Threads of this process as the OS counts them (Linux), else None."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None
'''


def test_team_sizes_change_between_calls(tmp_path):
    run_case(tmp_path, OS_THREADS + '''
        assert _vitc.threads_enabled()
        assert _vitc.pool_workers() == 0  # started lazily
        for n in [1, 2, 5, 3, 8, 2, 1, 4, 8, 7]:
            assert _vitc.pool_probe(n) == n, n
        assert _vitc.pool_workers() == 7  # the largest team's, reused by the others
        assert os_threads() in (None, 8)
        assert _vitc.pool_probe(0) == 1 and _vitc.pool_probe(-3) == 1  # clamped to the caller alone
    ''')


def test_short_lived_callers_do_not_leak_threads(tmp_path):
    """60 short-lived Python threads, 4 alive at a time, each running regions and a forward: the workers
    are borrowed and given back, so their number stays at the peak concurrent demand, and when the
    callers are gone the process has the main thread plus the workers, nothing else."""
    run_case(tmp_path, OS_THREADS + '''
        model = load()
        x = batch(3, 2)
        ref = outputs(model, x)
        errors = []

        def caller(i):
            try:
                for n in (3, 2, 4):
                    assert _vitc.pool_probe(n) == n
                assert np.array_equal(outputs(model, x), ref)
            except BaseException as exc:
                errors.append(exc)

        for wave in range(15):
            threads = [threading.Thread(target=caller, args=(4 * wave + i,)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert not errors, errors[0]
        workers = _vitc.pool_workers()
        assert 3 <= workers <= 4 * 3, workers  # at most 4 callers x (4 - 1) workers at once
        assert os_threads() in (None, 1 + workers), (os_threads(), workers)
    ''')


def test_concurrent_callers_with_different_thread_counts(tmp_path):
    """Several Python threads run regions and forwards at the same time, each model with its own thread
    count: every result is bitwise the single-threaded one (the kernels' results do not depend on the
    thread count), and the probes see their full teams."""
    run_case(tmp_path, '''
        counts = [1, 2, 3, 5]
        models = [vitc.ViTForImageClassification.from_pretrained("vitc-digits", threads=n) for n in counts]
        xs = [batch(10 + i, 1 + 3 * i) for i in range(len(counts))]
        ref_model = vitc.ViTForImageClassification.from_pretrained("vitc-digits", threads=1)
        refs = [outputs(ref_model, x) for x in xs]
        errors = []

        def run(i):
            try:
                for r in range(6):
                    assert _vitc.pool_probe(counts[i]) == counts[i]
                    j = (i + r) % len(counts)
                    assert np.array_equal(outputs(models[i], xs[j]), refs[j]), (i, j)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(counts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[0]
    ''', env={"OMP_NUM_THREADS": "16"})  # the concurrent calls split 16 "cores": each keeps its count


@pytest.mark.parametrize("threads", [1, 2, 3, 4, 7])
def test_thread_count_does_not_change_results(tmp_path, threads):
    run_case(tmp_path, '''
        x = batch(5, 9)
        ref = outputs(vitc.ViTForImageClassification.from_pretrained("vitc-digits", threads=1), x)
        n = int(sys.argv[1])
        model = vitc.ViTForImageClassification.from_pretrained("vitc-digits", threads=n)
        for _ in range(3):
            assert np.array_equal(outputs(model, x), ref)
        assert _vitc.pool_workers() == n - 1
    ''', str(threads))
