"""The oracle's Python 2 driver: runs the authors' code on tasks the suite prepared.

    python2.7 driver.py JOB.json

JOB.json: {"code_dir": the verified cache of their modules, "datasets_dir": a folder laid out
as their config.DATASETS_DIR expects, "results_dir": a scratch folder for their
config.RESULTS_DIR, "tasks": [{"task": NAME, "folder": DIR, ...}, ...]} (see tasks.py). Each
task writes its arrays and result.json into its folder. Standard output carries one JSON
object per line (start, progress, done, error) for the suite to read; everything the authors'
code prints goes to standard error. THEANO_FLAGS (floatX, compiledir) is set by the caller.
"""
from __future__ import absolute_import, division, print_function

import json
import os
import sys
import time
import traceback

PROGRESS_EVERY_S = 1.0


class Channel(object):
    """The JSON-lines channel to the suite, on the original standard output."""

    def __init__(self):
        self.out = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)  # the authors' prints (and progressbar) go to standard error
        sys.stdout = sys.stderr
        self.last = 0.0

    def send(self, **message):
        self.out.write(json.dumps(message) + "\n")
        self.out.flush()

    def progress(self, task, done, total):
        now = time.time()
        if now - self.last >= PROGRESS_EVERY_S or done == total:
            self.last = now
            self.send(event="progress", task=task, done=done, total=total)


def write_json(path, obj):
    with open(path + ".part", "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.rename(path + ".part", path)


def main(job_path):
    channel = Channel()
    with open(job_path) as f:
        job = json.load(f)
    from authors import Authors
    from tasks import TASKS
    authors = Authors(job["code_dir"], job["datasets_dir"], job["results_dir"])
    failed = 0
    for i, spec in enumerate(job["tasks"]):
        channel.send(event="start", task=i, name=spec["task"])
        started = time.time()
        try:
            result = TASKS[spec["task"]](authors, spec, spec["folder"],
                                         lambda done, total, i=i: channel.progress(i, done, total))
        except Exception as err:  # reported to the suite, which says which task failed and why
            failed += 1
            trace = traceback.format_exc()
            sys.stderr.write(trace)
            write_json(os.path.join(spec["folder"], "result.json"),
                       {"error": "%s: %s" % (type(err).__name__, err), "traceback": trace})
            channel.send(event="error", task=i, reason="%s: %s" % (type(err).__name__, err))
            continue
        result["wall_s"] = time.time() - started
        write_json(os.path.join(spec["folder"], "result.json"), result)
        channel.send(event="done", task=i)
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write("usage: driver.py JOB.json\n")
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
