-- Version 5: what the super admin publishes for the whole installation, not for one tenant.
--
-- platform_settings: the installation's branding and limits (appName, logos, colours, login page,
-- allowSignup, uploadLimit, ...). The Whaticket family keeps them among company 1's settings; here they
-- have a table of their own, so deleting or renumbering a company can never take them along, and no
-- tenant's admin can write them by writing "their" settings (storage/settings.py, PLATFORM_DEFAULTS).
-- announcements: notices from the super admin to every company's users (the bell on every page).
-- helps: help videos the super admin lists for every company's users (the Helps page).

CREATE TABLE platform_settings (
    key         text PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 100),
    value       text NOT NULL DEFAULT '' CHECK (length(value) <= 10000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE announcements (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- the author's company (the original's companyId); the notice outlives it
    company_id  bigint REFERENCES companies (id) ON DELETE SET NULL,
    priority    smallint NOT NULL DEFAULT 3 CHECK (priority BETWEEN 1 AND 3),  -- 1 high, 2 medium, 3 low
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 255),
    text        text NOT NULL CHECK (length(text) BETWEEN 1 AND 10000),
    media_path  text CHECK (length(media_path) <= 300),  -- a public file: <token>/<name> under /public
    media_name  text CHECK (length(media_name) <= 255),  -- the uploaded file's own name
    status      boolean NOT NULL DEFAULT true,  -- false: a draft, shown to super admins only
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((media_path IS NULL) = (media_name IS NULL))
);
CREATE INDEX announcements_created_idx ON announcements (created_at DESC, id DESC);

CREATE TABLE helps (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title        text NOT NULL CHECK (length(title) BETWEEN 3 AND 255),
    description  text NOT NULL DEFAULT '' CHECK (length(description) <= 10000),
    video        text NOT NULL DEFAULT '' CHECK (length(video) <= 64),  -- a YouTube video id
    link         text NOT NULL DEFAULT '' CHECK (length(link) <= 2000),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX helps_title_idx ON helps (lower(title), id);
