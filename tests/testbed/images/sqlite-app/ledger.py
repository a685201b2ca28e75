"""The test bench's SQLite application: a ledger of ACCOUNTS accounts holding TOTAL in all.

Every transaction moves a random amount from one account to another and appends a row to the
journal table, so any consistent copy of the database has sum(balance) == TOTAL and
count(journal) == the transfer counter. Environment: LEDGER_DB (default /data/ledger.db),
LEDGER_MODE (wal or delete: the journal mode), LEDGER_PAUSE (seconds between transactions).
"""
import os
import random
import sqlite3
import time

DB = os.environ.get("LEDGER_DB", "/data/ledger.db")
MODE = os.environ.get("LEDGER_MODE", "wal")
PAUSE = float(os.environ.get("LEDGER_PAUSE", "0.002"))
ACCOUNTS, TOTAL = 50, 50000

con = sqlite3.connect(DB, timeout=30, isolation_level=None)
con.execute(f"PRAGMA journal_mode={MODE}")
con.execute("CREATE TABLE IF NOT EXISTS account (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
con.execute("CREATE TABLE IF NOT EXISTS journal (id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, "
            "amount INTEGER, note TEXT)")
con.execute("CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER)")
if con.execute("SELECT count(*) FROM account").fetchone()[0] == 0:
    con.execute("BEGIN IMMEDIATE")
    con.executemany("INSERT INTO account VALUES (?, ?)", [(i, TOTAL // ACCOUNTS) for i in range(ACCOUNTS)])
    con.execute("INSERT INTO counter VALUES (1, 0)")
    con.execute("COMMIT")
print(f"ledger on {DB} ({MODE}) ready", flush=True)
while True:
    src, dst = random.sample(range(ACCOUNTS), 2)
    amount = random.randint(1, 50)
    con.execute("BEGIN IMMEDIATE")
    con.execute("UPDATE account SET balance = balance - ? WHERE id = ?", (amount, src))
    # a page's worth of text, so that transactions touch more than one page
    con.execute("INSERT INTO journal (src, dst, amount, note) VALUES (?, ?, ?, ?)",
                (src, dst, amount, os.urandom(300).hex()))
    con.execute("UPDATE account SET balance = balance + ? WHERE id = ?", (amount, dst))
    con.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
    con.execute("COMMIT")
    if PAUSE:
        time.sleep(PAUSE)
