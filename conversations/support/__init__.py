"""The support workflow: who answers a conversation (the bot, or a person), and what the team does in it."""
