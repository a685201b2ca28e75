"""Dump commands and the row counters that read the dump stream: no engine needed."""

from __future__ import annotations

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._data.dump import (
    DumpError,
    MysqlInsertCounter,
    PgCopyCounter,
    compare_counts,
    comparable_counts,
    count_spec,
    dump_spec,
    restore_spec,
)


def attrs(*env):
    return {"Config": {"Env": list(env)}}


PG_DUMP = b"""--
-- PostgreSQL database cluster dump
--
CREATE ROLE "app";
\\connect template1
\\connect postgres
COPY "public"."notes" ("id", "body") FROM stdin;
1\tCOPY "public"."fake" FROM stdin;
2\tline with \\\\. inside
\\.
CREATE DATABASE "shop" WITH TEMPLATE = template0;
\\connect -reuse-previous=on "dbname='shop'"
\\connect "shop"
COPY "public"."orders" ("id") FROM stdin;
1
2
3
\\.
COPY "public"."empty" ("id") FROM stdin;
\\.
"""

MY_DUMP = b"""-- MariaDB dump
CREATE DATABASE /*!32312 IF NOT EXISTS*/ `shop` /*!40100 DEFAULT CHARACTER SET utf8mb4 */;
USE `shop`;
CREATE TABLE `orders` (
INSERT INTO `orders` VALUES (1,'a');
INSERT INTO `orders` VALUES (2,'INSERT INTO `orders` VALUES (9)');
CREATE TABLE `empty` (
USE `mysql`;
INSERT INTO `global_priv` VALUES ('localhost','root','{}');
"""


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
def test_pg_copy_counter_counts_per_database_and_table(chunk):
    counter = PgCopyCounter()
    for i in range(0, len(PG_DUMP), chunk):
        counter.feed(PG_DUMP[i:i + chunk])
    counts = counter.close()
    assert counts == {"postgres": {'"public"."notes"': 2},
                      "shop": {'"public"."orders"': 3, '"public"."empty"': 0}}


@pytest.mark.parametrize("chunk", [1, 5, 1 << 20])
def test_mysql_counter_counts_rows_and_skips_system_databases(chunk):
    counter = MysqlInsertCounter()
    for i in range(0, len(MY_DUMP), chunk):
        counter.feed(MY_DUMP[i:i + chunk])
    counts = counter.close()
    assert counts["shop"] == {"`orders`": 2, "`empty`": 0}
    assert comparable_counts("mariadb", counts) == {"shop": {"`empty`": 0, "`orders`": 2}}


def test_compare_counts():
    assert compare_counts({"d": {"t": 3}}, {"d": {"t": 3}}) == []
    assert compare_counts({"d": {"t": 3}}, {"d": {"t": 2}}) == ["d.t: 2 rows, 3 at dump time"]
    assert compare_counts({"d": {"t": 3}}, {}) == ["d.t: None rows, 3 at dump time"]


def test_postgres_credentials_go_to_the_environment_only():
    spec = dump_spec("postgres", attrs("POSTGRES_USER=app", "POSTGRES_PASSWORD=s3cr3t"))
    assert spec.argv[0] == "pg_dumpall"
    assert spec.env == {"PGUSER": "app", "PGPASSWORD": "s3cr3t"}
    assert "s3cr3t" not in " ".join(spec.argv) + spec.describe + repr(spec)
    assert dump_spec("postgres", attrs()).env == {"PGUSER": "postgres"}


def test_mariadb_dump_is_consistent_and_complete():
    spec = dump_spec("mariadb", attrs("MYSQL_ROOT_PASSWORD=pw"))
    for flag in ("--all-databases", "--single-transaction", "--routines", "--triggers", "--events"):
        assert flag in spec.argv
    assert spec.env == {"MYSQL_PWD": "pw"} and "pw" not in " ".join(spec.argv)
    assert dump_spec("mariadb", attrs("MARIADB_ROOT_PASSWORD=a", "MYSQL_ROOT_PASSWORD=b")).env == {"MYSQL_PWD": "a"}
    assert dump_spec("mysql", attrs(), tool="mysqldump").argv[0] == "mysqldump"


def test_redis_and_mongodb_commands():
    assert dump_spec("redis", attrs()).argv == ["redis-cli", "--rdb", "-"]
    assert dump_spec("redis", attrs("REDIS_PASSWORD=x")).env == {"REDISCLI_AUTH": "x"}
    mongo = dump_spec("mongodb", attrs("MONGO_INITDB_ROOT_USERNAME=root", "MONGO_INITDB_ROOT_PASSWORD=pw"))
    assert "--archive" in mongo.argv and "pw" not in " ".join(mongo.argv) + mongo.describe
    # the password goes into a private --config file, never onto the tool's command line
    assert "--password" not in " ".join(mongo.argv) and "--config" in " ".join(mongo.argv)
    assert mongo.env["LIFEBOAT_MONGO_CONFIG"] == 'password: "pw"\n'
    assert mongo.env["LIFEBOAT_MONGO_USER"] == "root"
    restore = restore_spec("mongodb", attrs("MONGO_INITDB_ROOT_USERNAME=root", "MONGO_INITDB_ROOT_PASSWORD=p\"w"))
    assert "--drop" in restore.argv and "--password" not in " ".join(restore.argv)
    assert restore.env["LIFEBOAT_MONGO_CONFIG"] == 'password: "p\\"w"\n'
    assert dump_spec("mongodb", attrs()).argv == ["mongodump", "--archive", "--quiet"]
    assert "--drop" in restore_spec("mongodb", attrs()).argv


def test_unknown_engine_is_a_clear_error():
    with pytest.raises(DumpError, match="no dump for engine 'sqlite'"):
        dump_spec("sqlite", attrs())


def test_count_queries_quote_names():
    spec = count_spec("postgres", attrs(), "shop", ['"public"."orders"'])
    assert spec.argv[-1] == 'SELECT \'"public"."orders"\', count(*) FROM "public"."orders"'
    spec = count_spec("mariadb", attrs(), "sh`op", ["`orders`"])
    assert "FROM `sh`op`.`orders`" in spec.argv[-1]


def test_client_logins_come_from_the_container_environment():
    from ansible_collections.lifeboat.docker.plugins.module_utils._data.dump import mysql_login, postgres_login, redis_login

    assert postgres_login({}) == ("postgres", {"PGUSER": "postgres"})
    assert postgres_login({"POSTGRES_USER": "app", "POSTGRES_PASSWORD": "pw"}) == ("app", {"PGUSER": "app", "PGPASSWORD": "pw"})
    assert mysql_login({"MYSQL_ROOT_PASSWORD": "m"}) == {"MYSQL_PWD": "m"}
    assert mysql_login({"MARIADB_ROOT_PASSWORD": "a", "MYSQL_ROOT_PASSWORD": "m"}) == {"MYSQL_PWD": "a"}
    assert mysql_login({"MYSQL_ROOT_PASSWORD": ""}) == {} and redis_login({}) == {}
    assert redis_login({"REDIS_PASSWORD": "r"}) == {"REDISCLI_AUTH": "r"}
