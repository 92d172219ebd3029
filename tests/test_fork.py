"""Processes: a child forked after vitc has run must not hang, and must compute what the parent computes.

GNU OpenMP's workers do not survive fork(): a child forked after a forward used to wait forever in its first
parallel region. vitc now runs its own pool (csrc/threadpool.c) whose fork handler makes the child start its
own workers, and releases the locks other threads held (vitc/runtime.py). Every case below runs in a
subprocess with a timeout, so a regression fails instead of hanging the test run; in each, the children's
outputs (logits and every hidden state) are bitwise equal to the parent's, and a child really runs T threads
(its pool starts T - 1 workers of its own, and a T-thread probe region runs on T distinct threads).
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from fork_helpers import run_case  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")


def test_fork_after_forward(tmp_path):
    run_case(tmp_path, '''
        model = load()
        x = batch(1)
        ref = outputs(model, x)
        assert _vitc.pool_workers() == T - 1
        fork_and_wait(lambda: check_child(model, x, ref))
        assert np.array_equal(outputs(model, x), ref)  # the parent's pool is intact after the fork
        assert _vitc.pool_workers() == T - 1
        # a model loaded in the child works too
        fork_and_wait(lambda: check_child(load(), x, ref))
    ''')


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_multiprocessing_pool(tmp_path, method):
    """multiprocessing.Pool over a batch of inputs: with "fork" the workers inherit the parent's loaded and
    warmed model (and its pool, which they must not wait for); forkserver/spawn workers load their own."""
    run_case(tmp_path, '''
        import multiprocessing as mp

        MODEL = None


        def init():
            global MODEL
            if MODEL is None:  # forkserver / spawn: a fresh interpreter
                MODEL = load()


        def work(seed):
            before = _vitc.pool_workers()
            got = outputs(MODEL, batch(seed, 1 + seed % 4))
            return seed, got, before, _vitc.pool_probe(T), os.getpid()


        if __name__ == "__main__":
            method = sys.argv[1]
            parent_model = load()
            refs = {seed: outputs(parent_model, batch(seed, 1 + seed % 4)) for seed in range(8)}
            if method == "fork":
                MODEL = parent_model  # loaded and warmed: the parent's pool has workers at fork time
            with mp.get_context(method).Pool(2, initializer=init) as pool:
                results = pool.map(work, range(8), chunksize=1)
            for seed, got, before, probe, pid in results:
                assert pid != os.getpid()
                assert np.array_equal(got, refs[seed]), f"seed {seed}: outputs differ"
                assert probe == T, probe
            firsts = {}
            for seed, got, before, probe, pid in results:
                firsts.setdefault(pid, before)
            assert all(b == 0 for b in firsts.values()), f"a worker started with workers it did not start: {firsts}"
            print("ok", method)
    ''', method)


def test_pre_fork_server(tmp_path):
    """The gunicorn/Celery pattern: the parent loads and warms the model, forks N workers that each serve
    several requests (different batch sizes) at the same time, with T threads each; the parent serves on."""
    run_case(tmp_path, '''
        N, REQUESTS = 3, 4
        model = load()
        outputs(model, batch(0))  # warm-up: the parent's pool has its workers now

        def serve(w):
            assert _vitc.pool_workers() == 0
            for r in range(REQUESTS):
                seed = 100 * w + r
                np.save(f"out_{seed}.npy", outputs(model, batch(seed, 1 + r)))
            assert _vitc.pool_workers() == T - 1 and _vitc.pool_probe(T) == T

        pids = [start_child(lambda w=w: serve(w)) for w in range(N)]
        for w in range(N):  # the parent keeps serving while its workers run
            for r in range(REQUESTS):
                outputs(model, batch(100 * w + r, 1 + r))
        for pid in pids:
            wait_child(pid)
        for w in range(N):
            for r in range(REQUESTS):
                seed = 100 * w + r
                assert np.array_equal(np.load(f"out_{seed}.npy"), outputs(model, batch(seed, 1 + r))), seed
    ''')


def test_fork_while_another_thread_is_mid_forward(tmp_path):
    """Another thread holds the model's lock and its pool workers at the moment of the fork. The child has
    neither that thread nor those workers: the same model object must still run there, correctly."""
    run_case(tmp_path, '''
        model = load()
        x = batch(1, 32)  # a forward long enough to be caught in the middle
        ref = outputs(model, x)
        stop = threading.Event()

        def serve():
            while not stop.is_set():
                outputs(model, x)

        mid_forward = []
        os.register_at_fork(before=lambda: mid_forward.append(model._lock.locked()))
        server = threading.Thread(target=serve)
        server.start()
        caught = 0
        for attempt in range(50):
            while not model._lock.locked():
                time.sleep(0.0002)
            fork_and_wait(lambda: check_child(model, x, ref))
            caught += mid_forward[-1]  # recorded in the parent just before that fork
            if caught >= 3:
                break
        stop.set()
        server.join()
        assert caught >= 3, f"only {caught} forks landed inside a forward"
        assert np.array_equal(outputs(model, x), ref)
    ''')


def test_fork_from_a_forked_child(tmp_path):
    """Two generations: parent forward, fork; the child runs, forks again; the grandchild runs."""
    run_case(tmp_path, '''
        model = load()
        x = batch(1)
        ref = outputs(model, x)

        def child():
            check_child(model, x, ref)
            fork_and_wait(lambda: check_child(model, x, ref))
            assert np.array_equal(outputs(model, x), ref)  # the child's own pool survives its fork

        fork_and_wait(child)
    ''')


def test_threads_policy_in_a_child(tmp_path):
    """OMP_NUM_THREADS still sets the default thread count (vitc reads it; no OpenMP runtime is involved),
    and a child that sets another count runs with that."""
    run_case(tmp_path, '''
        model = vitc.ViTForImageClassification.from_pretrained("vitc-digits")  # threads from the policy
        x = batch(1)
        ref = outputs(model, x)
        assert vitc.get_num_threads() == 4 and _vitc.pool_workers() == 3, _vitc.pool_workers()

        def child():
            vitc.set_num_threads(2)
            assert np.array_equal(outputs(model, x), ref)
            assert _vitc.pool_workers() == 1

        fork_and_wait(child)
    ''', env={"OMP_NUM_THREADS": "4"})
