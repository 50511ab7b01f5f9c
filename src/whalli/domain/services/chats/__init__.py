"""Reading and managing existing chats (list, read, rename, delete, search), one module each;
``access`` holds the rule that hides chats the caller may not read. Starting a chat and
streaming its replies live in ``domain.services.chat``."""
