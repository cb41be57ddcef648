"""The judge: RRM prompt rendering (injection-proof), verdict parsing, forced-verdict ids."""

from reward_service.judge.judge import Judge
from reward_service.judge.profile import JudgeProfile, detect_profile
from reward_service.judge.prompt import SYSTEM_PROMPT, flatten_query, user_message
from reward_service.judge.render import TemplateMismatch
from reward_service.judge.verdict import ParsedVerdict

__all__ = [
    "SYSTEM_PROMPT",
    "Judge",
    "JudgeProfile",
    "ParsedVerdict",
    "TemplateMismatch",
    "detect_profile",
    "flatten_query",
    "user_message",
]
