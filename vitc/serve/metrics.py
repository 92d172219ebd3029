"""Prometheus text exposition of the server's counters (no client library needed for this handful).

Names follow Triton's split: inference_count (images) vs execution_count (forward calls), so
inference_count / execution_count is the average batch size.
"""
import bisect
import threading

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _Histogram:
    def __init__(self, buckets=LATENCY_BUCKETS):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value):
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def lines(self, name, labels=""):
        sep = "," if labels else ""
        out, cumulative = [], 0
        for bound, count in zip(self.buckets + (float("inf"),), self.counts):
            cumulative += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {cumulative}')
        brace = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{brace} {self.total!r}")
        out.append(f"{name}_count{brace} {cumulative}")
        return out


class Metrics:
    def __init__(self, model_name):
        self.model = model_name
        self._lock = threading.Lock()
        self.requests = {}  # (endpoint, code) -> count
        self.latency = {}  # endpoint -> _Histogram
        self.inference_count = 0
        self.execution_count = 0
        self.queue = _Histogram()
        self.compute = _Histogram()

    def request(self, endpoint, code, seconds):
        with self._lock:
            self.requests[(endpoint, code)] = self.requests.get((endpoint, code), 0) + 1
            hist = self.latency.get(endpoint)
            if hist is None:  # not setdefault: that builds a histogram per request to throw away
                hist = self.latency[endpoint] = _Histogram()
            hist.observe(seconds)

    def batch(self, size, queue_seconds, compute_seconds):
        with self._lock:
            self.inference_count += size
            self.execution_count += 1
            for seconds in queue_seconds:
                self.queue.observe(seconds)
            self.compute.observe(compute_seconds)

    def render(self, gauges):
        """Prometheus text format; gauges: {name: (help, value)} read at scrape time."""
        m = f'model="{self.model}"'
        with self._lock:
            lines = ["# HELP vitc_requests_total HTTP requests by endpoint and status code.",
                     "# TYPE vitc_requests_total counter"]
            for (endpoint, code), count in sorted(self.requests.items()):
                lines.append(f'vitc_requests_total{{endpoint="{endpoint}",code="{code}"}} {count}')
            lines += ["# HELP vitc_request_duration_seconds Time from request arrival to response, by endpoint.",
                      "# TYPE vitc_request_duration_seconds histogram"]
            for endpoint, hist in sorted(self.latency.items()):
                lines += hist.lines("vitc_request_duration_seconds", f'endpoint="{endpoint}"')
            lines += ["# HELP vitc_inference_count_total Images inferred.",
                      "# TYPE vitc_inference_count_total counter",
                      f"vitc_inference_count_total{{{m}}} {self.inference_count}",
                      "# HELP vitc_execution_count_total Forward calls (batches) run.",
                      "# TYPE vitc_execution_count_total counter",
                      f"vitc_execution_count_total{{{m}}} {self.execution_count}",
                      "# HELP vitc_queue_duration_seconds Time an image waited in the queue before its batch ran.",
                      "# TYPE vitc_queue_duration_seconds histogram"]
            lines += self.queue.lines("vitc_queue_duration_seconds", m)
            lines += ["# HELP vitc_compute_duration_seconds Time of one forward call (a batch).",
                      "# TYPE vitc_compute_duration_seconds histogram"]
            lines += self.compute.lines("vitc_compute_duration_seconds", m)
        for name, (help_text, value) in gauges.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name}{{{m}}} {value}"]
        return "\n".join(lines) + "\n"
