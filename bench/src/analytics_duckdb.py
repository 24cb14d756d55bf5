"""The DuckDB side of `crmkit-bench analytics`, run with the Python of the benchmark's own
virtual environment (the `duckdb` package from PyPI).

  load DB CSV_DIR TABLES_JSON       creates DB from the CSV files the benchmark wrote
  run DB SQL_FILE OUT_JSON RUNS     times the query RUNS times in this process and writes
                                    the times, the columns, the rows and the peak memory
"""

import json
import resource
import sys
import time

import duckdb


def load(db, csv_dir, spec_file):
    with open(spec_file) as f:
        spec = json.load(f)
    con = duckdb.connect(db)
    for table, columns in spec.items():
        cols = ", ".join("'%s': '%s'" % (c, t) for c, t in columns)
        con.execute(
            "CREATE TABLE %s AS SELECT * FROM read_csv('%s/%s.csv', header = true, delim = ',', quote = '\"', "
            "escape = '\"', nullstr = '', allow_quoted_nulls = false, columns = {%s})" % (table, csv_dir, table, cols)
        )
    con.execute("CHECKPOINT")
    con.close()


def run(db, sql_file, out, runs):
    with open(sql_file) as f:
        sql = f.read()
    con = duckdb.connect(db, read_only=True)
    con.execute("SET integer_division = true")
    times, rows, columns = [], [], []
    for _ in range(runs):
        started = time.perf_counter()
        cur = con.execute(sql)
        rows = cur.fetchall()
        times.append((time.perf_counter() - started) * 1000.0)
        columns = [d[0] for d in cur.description]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(out, "w") as f:
        json.dump({"times_ms": times, "columns": columns, "rows": [list(r) for r in rows], "peak_kib": peak}, f, default=str)


if __name__ == "__main__":
    if sys.argv[1] == "load":
        load(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        sys.exit("usage: load DB CSV_DIR TABLES_JSON | run DB SQL_FILE OUT_JSON RUNS")
