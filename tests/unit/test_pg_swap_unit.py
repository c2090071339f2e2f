"""Pure unit tests of the in-place restore helpers (names, setting lists, the archive's
database-level entries aimed at the sibling)."""

from __future__ import annotations

from dbcrate.engines.postgres.dbentries import parse
from dbcrate.engines.postgres.swap import MAX_IDENT, sibling_names, split_list_setting


def test_sibling_names_fit_the_identifier_limit() -> None:
    new, old = sibling_names("é" * 40, "0123abcd")
    assert len(new.encode()) <= MAX_IDENT and len(old.encode()) <= MAX_IDENT
    assert new.endswith("_dbcrate_new_0123abcd") and old.endswith("_dbcrate_old_0123abcd")
    assert sibling_names("shop", "ab") == ("shop_dbcrate_new_ab", "shop_dbcrate_old_ab")


def test_list_settings_are_split_like_the_server_stores_them() -> None:
    assert split_list_setting('"$user", public, "Odd, ""Schema"""') == [
        "$user", "public", 'Odd, "Schema"']
    assert split_list_setting('""') == [""]


_SCRIPT = '''--
-- Name: Odd DB; Type: DATABASE; Schema: -; Owner: postgres
--

CREATE DATABASE "Odd DB" WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE = 'C';


ALTER DATABASE "Odd DB" OWNER TO postgres;

\\connect -reuse-previous=on "dbname='Odd DB'"

--
-- Name: DATABASE "Odd DB"; Type: COMMENT; Schema: -; Owner: postgres
--

COMMENT ON DATABASE "Odd DB" IS 'about DATABASE "Odd DB" itself';


--
-- Name: Odd DB; Type: DATABASE PROPERTIES; Schema: -; Owner: postgres
--

ALTER DATABASE "Odd DB" SET work_mem TO '7MB';
ALTER ROLE r1 IN DATABASE "Odd DB" SET work_mem TO '3MB';


\\connect -reuse-previous=on "dbname='Odd DB'"

--
-- Name: DATABASE "Odd DB"; Type: ACL; Schema: -; Owner: postgres
--

GRANT CONNECT ON DATABASE "Odd DB" TO r1;
'''


def test_database_entries_are_aimed_at_the_sibling() -> None:
    entries = parse(_SCRIPT, "x_dbcrate_new_1")
    assert entries is not None
    assert entries.settings == [
        "ALTER DATABASE \"x_dbcrate_new_1\" SET work_mem TO '7MB';\n"
        "ALTER ROLE r1 IN DATABASE \"x_dbcrate_new_1\" SET work_mem TO '3MB';"]
    assert entries.grants == ['GRANT CONNECT ON DATABASE "x_dbcrate_new_1" TO r1;']
    # only the object name changes, not the text of the comment
    assert entries.comment == [
        'COMMENT ON DATABASE "x_dbcrate_new_1" IS \'about DATABASE "Odd DB" itself\';']
    assert parse("SELECT 1;", "x") is None
