"""The scaling-study harness behind launch/study.sh (its usage comment is the documentation).

    grid.py          the command line: options, grid axes (--grid, --grid-file), the points
    harness.py       runs every point under launch/mpirun.sh, one row a point; the entry point
                     (python3 -m study.harness with tools/ on the path, as launch/study.sh runs it)
    report.py        the CSV columns, study.csv and study.md
    rank_wrapper.py  the per-rank wrapper: the binary's peak memory and CPU time for each rank
    plot.py          the plots of a study.csv (tools/study/plot.py CSV OUTDIR)
"""
