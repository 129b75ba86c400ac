-- Goal and next goal (issue 13): once the counted total reaches the goal, the public
-- figures (/counts, /live, the widget) show the next goal instead. Optional; when set,
-- above the goal (the domain refuses it first, naming the field).
ALTER TABLE petitions ADD COLUMN next_goal integer;
ALTER TABLE petitions ADD CONSTRAINT petitions_next_goal_above_goal
    CHECK (next_goal IS NULL OR next_goal > goal);
