-- plantsync install script, assembled by the Makefile from the SQL fragments
-- kept beside the C code of each capability (src/*/NN_*.sql).
--
-- Security: no CREATE OR REPLACE, no IF NOT EXISTS; every function pins
-- search_path; objects are referred to with schema-qualified names.

\echo Use "CREATE EXTENSION plantsync" to load this file. \quit
