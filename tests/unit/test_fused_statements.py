"""`projections.read_models.sql.fused`: a batch's writes as one statement, parameters
renumbered, so the batch is one round trip whatever it holds."""

from __future__ import annotations

from projections.read_models.sql import Statement, fused


def test_writes_become_ctes_with_their_parameters_renumbered() -> None:
    a = Statement("INSERT INTO a SELECT * FROM unnest($1::int8[], $2::text[])", ([1], ["x"]))
    b = Statement("UPDATE b SET n = $1 WHERE k = $2", (5, "k"))
    tail = Statement(
        "\nWITH moved AS (UPDATE c SET p = $1 RETURNING p) SELECT count(*) FROM moved", (9,)
    )
    statement = fused([a, b], tail)
    assert statement.sql == (
        "WITH w0 AS (INSERT INTO a SELECT * FROM unnest($1::int8[], $2::text[])), "
        "w1 AS (UPDATE b SET n = $3 WHERE k = $4), "
        "moved AS (UPDATE c SET p = $5 RETURNING p) SELECT count(*) FROM moved"
    )
    assert statement.args == ([1], ["x"], 5, "k", 9)


def test_without_a_query_the_statement_ends_with_a_select() -> None:
    statement = fused([Statement("DELETE FROM t WHERE $1 AND $10", (True, False))])
    assert statement.sql == "WITH w0 AS (DELETE FROM t WHERE $1 AND $10) SELECT NULL"
    assert fused([], Statement("SELECT $1", (1,))) == Statement("SELECT $1", (1,))
    shifted = fused(
        [Statement("SELECT $1", (1,)), Statement("DELETE FROM t WHERE x = $10", tuple(range(10)))]
    )
    assert "x = $11" in shifted.sql
