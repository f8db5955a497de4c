-- Version 12: file lists (`/files`, the SaaS lineage's Files screen; its campaigns send a list's files).
--
-- A file list is the company's: a name (unique in the company, any case), a message, and its options —
-- each an uploaded file with a description (`name`, the caption it is sent with). An option is made
-- first (the list's form saves the descriptions) and gets its file by a later upload; until then it
-- has no `media_url`. `path` is the uploaded file's name as the frontend shows it, `media_type` its
-- mimetype, `media_url` where the file is kept and served (`/media/<token>/<name>`, storage/media.py).
-- `position` keeps the options in the order the form sent them: the frontend pairs its files with the
-- options it gets back by their index.

CREATE TABLE files (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id  bigint NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    message     text NOT NULL DEFAULT '' CHECK (length(message) <= 10000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX files_company_name_key ON files (company_id, lower(name));

CREATE TABLE files_options (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file_id     bigint NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    position    integer NOT NULL DEFAULT 0,
    name        text NOT NULL DEFAULT '' CHECK (length(name) <= 1024),
    path        text NOT NULL DEFAULT '' CHECK (length(path) <= 255),
    media_type  text NOT NULL DEFAULT '' CHECK (length(media_type) <= 255),
    media_url   text CHECK (length(media_url) <= 300),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX files_options_file_idx ON files_options (file_id, position, id);
