"""airspeed velocity (asv) benchmarks of natgrad: performance tracked across commits.

The modules here are thin: they import the *installed* ``natgrad_core`` (the commit asv
built, or the current checkout with ``-E existing``) and time, measure or track it.

* ``bench_time``     ``time_``: one optimizer step per solver; one Fisher-vector product;
                     one K-FAC factor update + inverse; dense Fisher build + solve; a CG
                     solve with a fixed iteration cap — at three problem sizes.
* ``bench_peers``    ``time_``: our side of every row of ``natgrad peers`` (built by
                     ``peers.ours_workloads``, the table's own definition); issue sizes, or
                     quick ones with ``NATGRAD_ASV_QUICK=1``.
* ``bench_memory``   ``peakmem_``: exact Fisher in parameter space vs the sample-space
                     (Woodbury) solve; the state of one K-FAC step.
* ``bench_track``    ``track_`` (lower is better, each with a ``unit``): iterations, work
                     and first-order calls to ε, suboptimality after a fixed budget, 1 − cosine to
                     the exact natural-gradient direction, cost per step in gradients.

A benchmark whose feature does not exist at an older commit is skipped (its ``setup``
raises ``NotImplementedError``), so history runs go back to the first commits.

Commands, from the repository root (asv 0.6; ``asv.conf.json`` is there)::

    asv machine --yes                      # once per machine: writes ~/.asv-machine.json

    # the current checkout, in the Python that runs asv (CI; nothing is built):
    asv run -E existing --quick --show-stderr --set-commit-hash $(git rev-parse HEAD)

    # history: one virtualenv under .asv/env, each commit's wheel installed into it
    asv run HEAD~1..HEAD                   # every commit in the range (first-parent)
    asv run HASHFILE:commits.txt           # or a list of commits
    asv continuous HEAD~1 HEAD             # compare two commits, report regressions
    asv compare HEAD~1 HEAD                # compare stored results

    # the dashboard (results/asv/html), made to work offline, and a preview:
    asv publish
    python tools/asv_offline.py            # vendors the JS/CSS from the npm registry
    asv preview                            # or: python -m http.server -d results/asv/html

Without ``--set-commit-hash`` an ``-E existing`` run prints its results but does not
store them. ``--bench REGEX`` selects benchmarks (e.g. ``--bench track_``).
"""
