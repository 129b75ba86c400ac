"""The mail sender: delivers the emails that the API queues in Postgres, over SMTP."""
