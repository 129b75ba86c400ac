-- Multilingual petitions. The petitions row keeps the text in its default language
-- (default_lang): everything that reads a petition's title keeps working. Each other
-- language's title, text and target is a row here. One total whatever the language:
-- signatures belong to the petition, never to a translation.
ALTER TABLE petitions ADD COLUMN default_lang text NOT NULL DEFAULT 'en'
    CHECK (default_lang ~ '^[a-z]{2,3}$');

CREATE TABLE petition_translations (
    petition_id  bigint NOT NULL REFERENCES petitions (id) ON DELETE CASCADE,
    -- A primary language subtag (fr, ar, ru): the page, the widget and the emails
    -- negotiate languages by it.
    lang         text NOT NULL CHECK (lang ~ '^[a-z]{2,3}$'),
    title        text NOT NULL CHECK (length(title) BETWEEN 1 AND 300),
    body         text NOT NULL DEFAULT '',
    target       text NOT NULL DEFAULT '',
    PRIMARY KEY (petition_id, lang)
);
